"""Prompt check for the chat sub-agent (issue 18): abstention on mdqa distractors vs the KV case.

Each sub-agent call of an isolated run is made here directly, one passage (or one JSON object) and
one question, with each candidate wording as the closing request, through fanout's own backend and
answer parser. Writes one JSON line per call to OUT and prints a summary. Usage:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python evals/results/ladder/prompt_probe.py \
        LITM_DIR OUT.jsonl [--model qwen2.5-coder-0.5b] [--questions 4] [--seed 1] [--kv]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from fanout.agents._factory import make_backend
from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.subagent import NOT_FOUND, is_not_found, parse_evidence_answer
from fanout.evals.suites.answers import holds_answer
from fanout.evals.suites.kvretrieval import format_kv_records, load_kvretrieval
from fanout.evals.suites.litm import ItemRange
from fanout.evals.suites.mdqa import load_mdqa

VARIANTS = {
    # the request as on the ladder branch since fa1abb5
    "current": (
        "Copy the line of the document that answers the question, then give the answer in a few "
        "words copied from that line, as:\nEvidence: <the line>\nAnswer: <the answer>\n"
        f"If no line of the document answers it, reply exactly: {NOT_FOUND}"
    ),
    # the request before the ladder (48bb90f)
    "pre-ladder": (
        "Answer in a few words using only the document. If the document does not answer the "
        f"question, reply exactly: {NOT_FOUND}"
    ),
    # current, plus: a line on the same subject is not an answer
    "same-subject": (
        "Copy the line of the document that answers the question, then give the answer in a few "
        "words copied from that line, as:\nEvidence: <the line>\nAnswer: <the answer>\n"
        "A line about the same subject that does not state the answer does not count. "
        f"If no line of the document answers it, reply exactly: {NOT_FOUND}"
    ),
    # the answer first, then the line it comes from; abstain only when nothing answers
    "answer-first": (
        "Answer the question in a few words using the document, then copy the line it comes "
        "from, as:\nAnswer: <the answer>\nEvidence: <the line>\n"
        f"If the document says nothing that answers it, reply exactly: {NOT_FOUND}"
    ),
    # the decision first, then the layout of current
    "decide-first": (
        "Does a line of the document answer the question? If yes, reply as:\nEvidence: <the "
        "line>\nAnswer: <the answer, copied from that line>\n"
        f"If no, reply exactly: {NOT_FOUND}"
    ),
}


async def ask(backend: object, context: str, question: str, closing: str) -> tuple[str, float]:
    """One sub-agent call: the document, the question, then the closing request."""
    prompt = Prompt(instruction="", context=context, task=question, closing=closing)
    start = time.perf_counter()
    completion = await backend.complete(CompletionRequest(prompt=prompt))  # type: ignore[attr-defined]
    return completion.text, time.perf_counter() - start


async def main() -> None:
    """Run the probe."""
    parser = argparse.ArgumentParser()
    parser.add_argument("litm", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--kv", default="", help="kv calls, e.g. same-subject:0:start,current:2:end"
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    backend = make_backend("llama", model=args.model)
    out = args.out.open("a")

    def record(row: dict[str, object]) -> None:
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(json.dumps({k: v for k, v in row.items() if k != "raw"}), flush=True)

    suite = load_mdqa(args.litm / "nq-open-oracle.jsonl.gz", position="middle")
    for index in range(args.questions):
        group = suite.group(args.k, index, seed=args.seed)
        question = group.questions[0]
        for variant in variants:
            for doc in group.documents:
                raw, seconds = await ask(backend, doc.text, question.text, VARIANTS[variant])
                answer, quote = parse_evidence_answer(raw)
                gold = doc.id in question.document_ids
                record({
                    "suite": "mdqa", "group": group.id, "variant": variant, "doc": doc.id,
                    "gold": gold, "abstained": is_not_found(answer),
                    "right": holds_answer(answer, question.answers), "answer": answer,
                    "quote": quote, "s": round(seconds, 1), "raw": raw,
                })  # fmt: skip
    kv = load_kvretrieval(args.litm / "kv-retrieval-75_keys.jsonl.gz", items=ItemRange(0, 6))
    for spec in filter(None, args.kv.split(",")):
        variant, number, where = spec.split(":")
        _, item = kv.items[int(number)]
        others = [r for r in item.ordered_kv_records if r[0] != item.key][:74]
        at = {"start": 0, "middle": 37, "end": 74}[where]
        text = format_kv_records([*others[:at], (item.key, item.value), *others[at:]])
        question_text = f'What is the value of the key "{item.key}"?'
        raw, seconds = await ask(backend, text, question_text, VARIANTS[variant])
        answer, quote = parse_evidence_answer(raw)
        record({
            "suite": "kvretrieval", "item": int(number), "at": at, "variant": variant,
            "abstained": is_not_found(answer), "right": holds_answer(answer, [item.value]),
            "answer": answer, "quote": quote, "s": round(seconds, 1), "raw": raw,
        })  # fmt: skip
    await backend.aclose()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
