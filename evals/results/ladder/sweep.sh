#!/usr/bin/env bash
# The model-ladder sweeps, one fanout eval at a time (two llama.cpp processes on two cores slow each
# other far more than 2x). Every command resumes from its folder's results.json: rerun this script
# to finish an interrupted sweep. Usage:
#   LITM=/path/to/lost-in-the-middle-data OUT=eval-out/ladder bash evals/results/ladder/sweep.sh MODEL...
# MODEL: qwen2.5-coder-0.5b, qwen2.5-coder-1.5b (fanout models pull NAME first), smollm2, gemma3-270m.
# LITM holds nq-open-oracle.jsonl.gz and kv-retrieval-75_keys.jsonl.gz from nelson-liu/lost-in-the-middle.
set -u
FANOUT=${FANOUT:-.venv/bin/fanout}
LITM=${LITM:?set LITM to the folder with the Lost in the Middle files}
OUT=${OUT:-eval-out/ladder}
COMMON=(--strategies isolated,monolithic --retries 0)
# --timeout is per call: a 5k-token prompt took more than the default 300 s on the loaded 2-core VM
# (the first kvretrieval run lost its first call that way and was discarded).

run() {  # run NAME ARGS...: one eval, logged; a failure is reported and the sweep goes on
    local name=$1; shift
    echo "== $(date -u +%FT%TZ) $name: $FANOUT eval $*"
    "$FANOUT" eval "$@" || echo "== $name exited $?"
}

mdqa() {  # mdqa MODEL POSITION
    run "$1 mdqa $2" --suite mdqa --dataset "$LITM/nq-open-oracle.jsonl.gz" --model "$1" \
        "${COMMON[@]}" --instances 10,20 --groups 3 --position "$2" --out "$OUT/$1/mdqa-$2"
}

for model in "$@"; do
    # the case first: one object of 75 pairs (groups of N run in the order listed)
    run "$model kvretrieval" --suite kvretrieval --dataset "$LITM/kv-retrieval-75_keys.jsonl.gz" \
        --model "$model" "${COMMON[@]}" --instances 75,10,25 --groups 3 --position random \
        --timeout 1800 --out "$OUT/$model/kvretrieval"
    mdqa "$model" middle
    mdqa "$model" start
    mdqa "$model" end
    run "$model nq" --suite nq --model "$model" "${COMMON[@]}" --instances 1,5,10 --groups 2 \
        --out "$OUT/$model/nq"
    run "$model keyvalue" --suite keyvalue --model "$model" "${COMMON[@]}" --instances 1,5,10 \
        --groups 2 --doc-tokens 100 --out "$OUT/$model/keyvalue"
done
echo "== $(date -u +%FT%TZ) sweep done"
