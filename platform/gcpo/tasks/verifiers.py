"""Verifiers: does an extracted answer match the reference? Each is `(answer, reference) -> bool`.

These functions run inside `VerifierPool` worker processes, which own the timeout; so math-verify's own
signal-based timeouts are switched off here (`parsing_timeout=None`, `timeout_seconds=None`): one timeout
mechanism, one place that counts timeouts. Calling them directly in-process has no timeout.

Registry (`VERIFIERS`; the `task` field of a JSONL row names one):
- `math`: math-verify; equivalent forms match (`0.5`, `1/2`, `\\frac{1}{2}`, `1,000` = `1000`). An answer that
  math-verify cannot read as written is retried wrapped in `$...$` (bare LaTeX such as `\\frac12`).
- `basic_arithmetic`, `gsm_symbolic`: the reasoning-gym dataset's own `score_answer`. It returns graded scores
  (e.g. 0.01 for a wrong number); accuracy is binary, so only a score of 1.0 counts as correct. Only datasets
  whose `score_answer` reads nothing but `entry["answer"]` are registered, so a JSONL row can use them too.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

Verifier = Callable[[str, str], bool]

REASONING_GYM_VERIFIERS = ("basic_arithmetic", "gsm_symbolic")


@functools.lru_cache(maxsize=4096)
def _parse_reference(reference: str) -> list[Any]:
    from math_verify import parse

    return parse(reference, parsing_timeout=None)


def verify_math(answer: str, reference: str) -> bool:
    """math-verify equivalence of `answer` to `reference` (see the module docstring)."""
    from math_verify import parse, verify

    gold = _parse_reference(reference)
    pred = parse(answer, parsing_timeout=None) or parse(f"${answer}$", parsing_timeout=None)
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=None))


@functools.lru_cache(maxsize=None)
def _reasoning_gym_dataset(name: str) -> Any:
    import reasoning_gym

    return reasoning_gym.create_dataset(name, seed=0, size=1)


def _reasoning_gym_verifier(name: str) -> Verifier:
    def verify(answer: str, reference: str) -> bool:
        entry = {"question": "", "answer": reference, "metadata": {}}
        return float(_reasoning_gym_dataset(name).score_answer(answer, entry)) >= 1.0

    verify.__name__ = f"verify_{name}"
    return verify


VERIFIERS: dict[str, Verifier] = {
    "math": verify_math,
    **{name: _reasoning_gym_verifier(name) for name in REASONING_GYM_VERIFIERS},
}


def check_verifier_name(name: str) -> str:
    """`name` if it is registered, else ValueError listing the registered verifiers."""
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; known: {', '.join(sorted(VERIFIERS))}")
    return name


def score(verifier: str, answer: str, reference: str) -> bool:
    """Run the named verifier (no timeout here: the pool's worker process is killed if it takes too long)."""
    return VERIFIERS[check_verifier_name(verifier)](answer, reference)


def warm_up() -> None:
    """Import and initialise every verifier's dependencies, so a worker's first job is not charged for it."""
    _parse_reference("1")
    for name in REASONING_GYM_VERIFIERS:
        _reasoning_gym_dataset(name)
