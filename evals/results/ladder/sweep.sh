#!/usr/bin/env bash
# The model-ladder sweeps, one fanout eval at a time (two llama.cpp processes on two cores slow each
# other far more than 2x), in the order they matter. Every command resumes from its folder's
# results.json: rerun this script to finish an interrupted sweep (finished steps cost a second).
# Usage:
#   LITM=/path/to/lost-in-the-middle-data OUT=eval-out/ladder bash evals/results/ladder/sweep.sh [STEP...]
# STEP: kv, kvchunks, mdqa-middle, mdqa-ends, synthetic, small, auto, auto-small, mdqa20 (default:
# all but auto-small, in that order). Qwen models: fanout models pull qwen2.5-coder-1.5b (and -0.5b) first.
# LITM holds nq-open-oracle.jsonl.gz and kv-retrieval-75_keys.jsonl.gz from nelson-liu/lost-in-the-middle.
set -u
FANOUT=${FANOUT:-.venv/bin/fanout}
LITM=${LITM:?set LITM to the folder with the Lost in the Middle files}
OUT=${OUT:-eval-out/ladder}
QWEN=(qwen2.5-coder-1.5b qwen2.5-coder-0.5b)
SMALL=(gemma3-270m smollm2)
COMMON=(--strategies isolated,monolithic --retries 0)
# --timeout is per call: a 5k-token prompt took more than the default 300 s on the loaded 2-core VM.
KV=(--suite kvretrieval --dataset "$LITM/kv-retrieval-75_keys.jsonl.gz" --instances 75 --groups 6
    --position random --timeout 1800)

run() {  # run NAME ARGS...: one eval, logged; a failure is reported and the sweep goes on
    local name=$1; shift
    echo "== $(date -u +%FT%TZ) $name: $FANOUT eval $*"
    "$FANOUT" eval "$@" || echo "== $name exited $?"
}

mdqa() {  # mdqa MODEL POSITION K [QUESTIONS]: QUESTIONS questions (default 10), one a group
    run "$1 mdqa k=$3 $2" --suite mdqa --dataset "$LITM/nq-open-oracle.jsonl.gz" --model "$1" \
        "${COMMON[@]}" --instances "$3" --groups "${4:-10}" --position "$2" --out "$OUT/$1/mdqa-$2-k$3"
}

kv() {  # kv MODEL: one object of 75 pairs, isolated reads it whole (32k context)
    run "$1 kvretrieval" "${KV[@]}" --model "$1" "${COMMON[@]}" --out "$OUT/$1/kvretrieval"
}

kvchunks() {  # kvchunks MODEL: the same groups, isolated over 1,024-token chunks (one prompt is
    # the same as in kv(): fanout ladder pairs the two folders)
    run "$1 kvretrieval chunks" "${KV[@]}" --model "$1" --strategies isolated --retries 0 \
        --chunk-tokens 1024 --out "$OUT/$1/kvretrieval-chunks1024"
}

synthetic() {  # synthetic MODEL: nq (NQ-open, shipped slice) and keyvalue at N=1,5,10
    run "$1 nq" --suite nq --model "$1" "${COMMON[@]}" --instances 1,5,10 --groups 2 \
        --out "$OUT/$1/nq"
    run "$1 keyvalue" --suite keyvalue --model "$1" "${COMMON[@]}" --instances 1,5,10 \
        --groups 2 --doc-tokens 100 --out "$OUT/$1/keyvalue"
}

auto() {  # auto MODEL: auto with the seed-0 nq profile, on other questions (seed 1); written
    # beside OUT (OUT-auto) so that `fanout ladder OUT/*/*` pools only the fixed strategies' cells
    local profile="$OUT/$1/nq/profile.json"
    [ -f "$profile" ] || { echo "== $1 auto skipped: no $profile yet"; return; }
    run "$1 auto nq" --suite nq --model "$1" --strategies auto,isolated,monolithic --retries 0 \
        --instances 1,5,10 --groups 2 --seed 1 --profile "$profile" --out "$OUT-auto/$1/nq-auto-seed1"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(kv kvchunks mdqa-middle mdqa-ends synthetic small auto mdqa20)
for step in "${steps[@]}"; do
    case $step in
        kv) for m in "${QWEN[@]}"; do kv "$m"; done ;;
        kvchunks) for m in "${QWEN[@]}"; do kvchunks "$m"; done ;;
        mdqa-middle) for m in "${QWEN[@]}"; do mdqa "$m" middle 10; done ;;
        mdqa-ends) for m in "${QWEN[@]}"; do mdqa "$m" start 10; mdqa "$m" end 10; done ;;
        synthetic) for m in "${QWEN[@]}"; do synthetic "$m"; done ;;
        small) for m in "${SMALL[@]}"; do
                   kv "$m"; kvchunks "$m"
                   for p in start middle end; do mdqa "$m" "$p" 10; done
                   synthetic "$m"
               done ;;
        auto) for m in "${QWEN[@]}" "${SMALL[@]}"; do auto "$m"; done ;;
        auto-small) for m in "${SMALL[@]}"; do auto "$m"; done ;;
        # k=20: 5 questions a cell (the 7 Dec run; a larger count resumes the same folders)
        mdqa20) for p in middle start end; do
                    for m in "${QWEN[@]}" "${SMALL[@]}"; do mdqa "$m" "$p" 20 "${K20_QUESTIONS:-5}"; done
                done ;;
        *) echo "unknown step $step"; exit 2 ;;
    esac
done
echo "== $(date -u +%FT%TZ) sweep done: ${steps[*]}"
