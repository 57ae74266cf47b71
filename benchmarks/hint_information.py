"""How much of the answer does a prefix hint give away? Per built-in task and hint fraction, the share of training
items whose hint (the first floor(f L) tokens of the golden answer, `gcpo.algorithms.hints.hint_length`) already
holds the final answer: the `<answer>` tag or, before it, the final value as a whole number in the text.

    .venv/bin/python benchmarks/hint_information.py [--items 500] [--fractions 0.25,0.5,0.75]

A hint that holds the answer turns "is the policy helped by a partial solution" into "can it copy": the hint claim
(golden answers used as a prefix rather than a replacement) is only a question on a task where hints are partial
information. Writes benchmarks/results/hint_information.{json,md}. CPU, seconds; no model is run (the default
model's tokenizer only).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TASKS = ("basic_arithmetic", "multi_arithmetic", "gsm_symbolic")


def answer_value(golden: str) -> str | None:
    found = re.search(r"<answer>(.*?)</answer>", golden, re.S)
    return found.group(1).strip() if found else None


def gives_away(hint: str, value: str | None) -> bool:
    """The hint holds the answer tag, or the final value as a separate number."""
    if "<answer>" in hint:
        return True
    return value is not None and re.search(rf"(?<![\d.]){re.escape(value)}(?![\d.])", hint) is not None


def measure(task_name: str, tokenizer, items: int, fractions: list[float]) -> dict:
    from gcpo.algorithms.hints import hint_length
    from gcpo.config import load_config
    from gcpo.tasks.builtin import builtin_splits
    from gcpo.tasks.prompts import render_response

    cfg = load_config(overrides=[f"task.name={task_name}"])
    train, _ = builtin_splits(task_name, cfg.task.seed, items, cfg.task.eval_size)
    rows = []
    for item in train.items:
        ids = render_response(tokenizer, item.golden)
        rows.append((ids, answer_value(tokenizer.decode(ids))))
    out = {"items": len(rows), "golden_tokens_mean": sum(len(ids) for ids, _ in rows) / len(rows)}
    for f in fractions:
        given = sum(gives_away(tokenizer.decode(ids[:hint_length(len(ids), f)]), value) for ids, value in rows)
        out[f"gives_away_at_{f:g}"] = given / len(rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--fractions", default="0.25,0.5,0.75")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from gcpo.config import ModelConfig
    from gcpo.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(ModelConfig()))
    fractions = [float(f) for f in args.fractions.split(",")]
    results = {name: measure(name, tokenizer, args.items, fractions) for name in TASKS}
    record = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "command": "benchmarks/hint_information.py "
              f"--items {args.items} --fractions {args.fractions}", "tasks": results}
    (RESULTS / "hint_information.json").write_text(json.dumps(record, indent=2) + "\n")
    header = "| task | items | golden tokens (mean) | " + " | ".join(f"hint gives the answer at f = {f:g}" for f in fractions)
    lines = [header + " |", "|" + "---|" * (3 + len(fractions))]
    for name, r in results.items():
        cells = " | ".join(f"{r[f'gives_away_at_{f:g}']:.0%}" for f in fractions)
        lines.append(f"| {name} | {r['items']} | {r['golden_tokens_mean']:.1f} | {cells} |")
    (RESULTS / "hint_information.md").write_text(f"`{record['command']}`, {record['date']}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
