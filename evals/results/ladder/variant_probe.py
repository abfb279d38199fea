"""Which chat request answers gold passages and abstains on distractors, on one model.

For each of the first 10 seed-0 mdqa questions (k=10, gold in the middle, development items), the
gold passage and the first distractor of its group are each asked with every variant of
`prompt_probe.VARIANTS`, through fanout's own backend (the GGUF's chat template, greedy, 128 tokens).
"Right": one of the question's answers appears in the parsed answer (case-insensitive substring).
Usage: python evals/results/ladder/variant_probe.py MODEL VARIANT[,VARIANT...] > out.jsonl
(LITM: folder holding nq-open-oracle.jsonl.gz; default /work/data/lost-in-the-middle).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from prompt_probe import VARIANTS  # type: ignore[import-not-found]  # the script beside this one

from fanout.agents._factory import make_backend
from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.subagent import is_not_found, parse_evidence_answer
from fanout.evals.suites.mdqa import load_mdqa


async def main() -> None:
    """Run the probe; one JSON line per call, then one summary line per variant."""
    model, names = sys.argv[1], sys.argv[2].split(",")
    litm = Path(os.environ.get("LITM", "/work/data/lost-in-the-middle"))
    suite = load_mdqa(litm / "nq-open-oracle.jsonl.gz", position="middle")
    backend = make_backend("llama", model=model)
    for name in names:
        right = gold_abstained = distractor_abstained = 0
        for g in range(10):
            group = suite.group(10, g, seed=0)
            q = group.questions[0]
            gold = next(d for d in group.documents if d.id in q.document_ids)
            other = next(d for d in group.documents if d.id not in q.document_ids)
            for doc, is_gold in ((gold, True), (other, False)):
                prompt = Prompt(
                    instruction="", context=doc.text, task=q.text, closing=VARIANTS[name]
                )
                completion = await backend.complete(
                    CompletionRequest(prompt=prompt, max_tokens=128)
                )
                answer, _ = parse_evidence_answer(completion.text)
                abstained = is_not_found(answer)
                ok = not abstained and any(a.lower() in answer.lower() for a in q.answers)
                if is_gold:
                    right += ok
                    gold_abstained += abstained
                else:
                    distractor_abstained += abstained
                line = {"v": name, "gold": is_gold, "q": q.text, "raw": completion.text[:200]}
                print(json.dumps(line), flush=True)
        print(f"## {name}: gold right {right}/10 (abstained {gold_abstained}); "
              f"distractors abstained {distractor_abstained}/10", flush=True)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
