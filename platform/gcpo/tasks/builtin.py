"""Built-in tasks, generated offline from reasoning-gym with fixed seeds, each with a golden answer per item.

| task               | reasoning-gym dataset | items                                  | golden answer                  |
|--------------------|-----------------------|----------------------------------------|--------------------------------|
| `basic_arithmetic` | `basic_arithmetic`    | 2 terms, 1-2 digit numbers (easy)      | `a op b = v.` + tagged answer  |
| `multi_arithmetic` | `basic_arithmetic`    | 3-4 terms, 1-2 digit numbers           | chain of rewrites, one op each |
| `gsm_symbolic`     | `gsm_symbolic`        | GSM8K-style word problems              | `metadata["answer_cot"]`       |

Other dataset options are reasoning-gym's defaults (operators + - * /, parentheses and negated groups allowed).
The verifier of every built-in item is its reasoning-gym dataset's `score_answer`.

Splits (disjoint by construction and checked):
- held-out: the first `eval_size` usable items of seed `seed + HELD_OUT_SEED_OFFSET`; it does not depend on
  `train_size`, and a smaller `eval_size` gives a prefix of a larger one.
- train: the first `train_size` usable items of seed `seed` whose question is not in the held-out split.
  reasoning-gym draws item `i` of seed `s` from `Random(s + i)`, so the large offset keeps the two index
  streams apart; deduplication by question text makes disjointness exact.
- warm-start (`gcpo warmstart`'s supervised items): the first `count` usable items of seed
  `seed + WARMSTART_SEED_OFFSET` whose question is in neither the train split nor the held-out split drawn at
  max(`eval_size`, `WARMSTART_HELD_OUT_GUARD`) items (so a larger held-out set later still never overlaps).
- Within a split, a repeated question is skipped. "Usable" excludes arithmetic items whose reference relies on
  reasoning-gym's floor division of a non-multiple (see `gcpo.tasks.arithmetic`); their count is the split's
  `skipped_rows` and is logged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gcpo.tasks.answers import tagged
from gcpo.tasks.arithmetic import UnusableExpression, solve
from gcpo.tasks.types import Split, Task, TaskItem

log = logging.getLogger(__name__)

HELD_OUT_SEED_OFFSET = 10_000_019
WARMSTART_SEED_OFFSET = 20_000_039
WARMSTART_HELD_OUT_GUARD = 1000


def arithmetic_golden(entry: Mapping[str, Any]) -> str:
    """A worked solution of a reasoning-gym arithmetic entry; UnusableExpression if its reference is not the
    true value (floor division of a non-multiple)."""
    text, value = solve(entry["metadata"]["expression"])
    if str(value) != entry["answer"]:
        raise UnusableExpression(f"reference {entry['answer']!r} differs from the exact value {value}")
    return text


_CALCULATOR = re.compile(r"<<[^<>]*>>")


def golden_from_worked_solution(solution: str, answer: str) -> str:
    """A GSM8K-style worked solution (ending in a `#### VALUE` line) in the policy's response format: the
    reasoning lines, calculator annotations `<<48/2=24>>` removed, then `<answer>answer</answer>`.
    ValueError if the `####` line is missing or its value differs from `answer`."""
    lines = solution.strip().splitlines()
    if not lines or not lines[-1].lstrip().startswith("####"):
        raise ValueError("the worked solution does not end with a '#### VALUE' line")
    final = lines[-1].lstrip()[4:].strip().replace(",", "")
    try:
        same = float(final) == float(answer.replace(",", ""))
    except ValueError:
        same = final == answer
    if not same:
        raise ValueError(f"the worked solution ends with {final!r} but the answer is {answer!r}")
    reasoning = _CALCULATOR.sub("", "\n".join(lines[:-1])).strip()
    return f"{reasoning}\n{tagged(answer)}" if reasoning else tagged(answer)


def gsm_golden(entry: Mapping[str, Any]) -> str:
    """The golden answer of a reasoning-gym `gsm_symbolic` entry, from its `answer_cot`."""
    return golden_from_worked_solution(entry["metadata"]["answer_cot"], entry["answer"])


@dataclass(frozen=True)
class BuiltinSpec:
    """How one built-in task is drawn from reasoning-gym."""

    dataset: str
    golden: Callable[[Mapping[str, Any]], str]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verifier(self) -> str:
        return self.dataset


BUILTIN_TASKS: dict[str, BuiltinSpec] = {
    "basic_arithmetic": BuiltinSpec("basic_arithmetic", arithmetic_golden,
                                    {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}),
    "multi_arithmetic": BuiltinSpec("basic_arithmetic", arithmetic_golden,
                                    {"min_terms": 3, "max_terms": 4, "min_digits": 1, "max_digits": 2}),
    "gsm_symbolic": BuiltinSpec("gsm_symbolic", gsm_golden),
}


def builtin_spec(name: str) -> BuiltinSpec:
    """The spec of built-in task `name`; ConfigError naming `task.name` otherwise."""
    if name not in BUILTIN_TASKS:
        from gcpo.config import ConfigError

        raise ConfigError(f"task.name: unknown task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}, "
                          f"or 'jsonl' with task.path")
    return BUILTIN_TASKS[name]


def generate_split(name: str, split: Split, seed: int, count: int, exclude: frozenset[str] = frozenset()) -> Task:
    """The first `count` usable, distinct items of built-in task `name` drawn with reasoning-gym seed
    `seed` (see the module docstring), skipping questions in `exclude`. `split` and `seed` name the item ids."""
    import reasoning_gym

    spec = builtin_spec(name)
    items: list[TaskItem] = []
    seen: set[str] = set(exclude)
    unusable = 0
    size, index = max(2 * count, 64), 0
    dataset = reasoning_gym.create_dataset(spec.dataset, seed=seed, size=size, **spec.options)
    while len(items) < count:
        if index == size:  # items are prefix-stable in the dataset size: grow it and continue
            if size > 64 * count + 100_000:
                raise ValueError(f"{name}: only {len(items)} distinct items found for the {split} split, "
                                 f"{count} requested; lower task.train_size / task.eval_size")
            size *= 2
            dataset = reasoning_gym.create_dataset(spec.dataset, seed=seed, size=size, **spec.options)
        entry = dataset[index]
        index += 1
        if entry["question"] in seen:
            continue
        seen.add(entry["question"])
        try:
            golden = spec.golden(entry)
        except (UnusableExpression, ValueError) as e:
            unusable += 1
            log.debug("%s/%s item %d dropped: %s", name, split, index - 1, e)
            continue
        items.append(TaskItem(id=f"{name}/{split}/{seed}/{index - 1}", question=entry["question"],
                              answer=entry["answer"], golden=golden, verifier=spec.verifier,
                              metadata=dict(entry["metadata"])))
    if unusable:
        log.info("%s/%s: dropped %d unusable item(s) while drawing %d", name, split, unusable, count)
    return Task(name, split, items, spec.verifier, skipped_rows=unusable)


def builtin_held_out(name: str, seed: int, eval_size: int) -> Task:
    """The held-out split of built-in task `name` (independent of the train size)."""
    return generate_split(name, "held_out", seed + HELD_OUT_SEED_OFFSET, eval_size)


def builtin_splits(name: str, seed: int, train_size: int, eval_size: int) -> tuple[Task, Task]:
    """(train, held_out) of built-in task `name`; disjoint by question (checked)."""
    held_out = builtin_held_out(name, seed, eval_size)
    held_questions = frozenset(item.question for item in held_out.items)
    train = generate_split(name, "train", seed, train_size, exclude=held_questions)
    overlap = held_questions & {item.question for item in train.items}
    if overlap:  # pragma: no cover - excluded above; kept as the invariant's guard
        raise AssertionError(f"{name}: {len(overlap)} question(s) in both splits")
    return train, held_out


def builtin_warmstart(name: str, seed: int, train_size: int, eval_size: int, count: int) -> Task:
    """The warm-start split of built-in task `name`: disjoint by question from its train split (`train_size`)
    and from its held-out split at max(`eval_size`, WARMSTART_HELD_OUT_GUARD) items (checked)."""
    train, held_out = builtin_splits(name, seed, train_size, max(eval_size, WARMSTART_HELD_OUT_GUARD))
    taken = frozenset(item.question for item in train.items + held_out.items)
    warm = generate_split(name, "warmstart", seed + WARMSTART_SEED_OFFSET, count, exclude=taken)
    if taken & {item.question for item in warm.items}:  # pragma: no cover - excluded above; the invariant's guard
        raise AssertionError(f"{name}: the warm-start split overlaps the train or held-out split")
    return warm
