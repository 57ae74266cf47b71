"""Golden-answer prefix hints: a third use of a golden answer, beside GCPO's replacement and ga_sft's imitation.

In an all-wrong group, some rollouts are sampled again with the first tokens of the golden answer appended to the
prompt; the hint tokens are conditioning (never trained on) and the policy's own continuation is trained on-policy
with the group's advantages (Prefix-RFT; UFT, which anneals the hint length; AdaPrefix-GRPO, which adapts it to
hold the hinted success rate near 50%). Pure functions here; where they are used: `gcpo.training.rollouts`.

Choices the papers leave open, stated:
- The hint length is a fraction of the golden answer's tokens, rounded down, and at most all but its last token
  (a hint is never the whole answer).
- Which rollouts: the last `algorithm.hint_rollouts` of the group (the others stay the unhinted samples, so the
  group still contrasts hinted and unhinted attempts).
- The adaptive rule is a proportional controller on the fraction: after each step's collection,
  f <- clip(f + rate * (target - s), 0, 1), where s is the success rate (accuracy) of that step's hinted samples;
  a step with no hinted sample leaves f unchanged. Above the target the hint shortens, below it lengthens.
"""

from __future__ import annotations

import math


def hint_length(golden_tokens: int, fraction: float) -> int:
    """How many leading golden-answer tokens a hint holds: floor(fraction x length), at most length - 1, >= 0."""
    return max(0, min(math.floor(fraction * golden_tokens), golden_tokens - 1))


def adapt_hint_fraction(fraction: float, success: float | None, *, target: float, rate: float) -> float:
    """The adaptive controller's next fraction after a step whose hinted samples succeeded at rate `success`
    (None: no hinted sample this step, unchanged)."""
    if success is None:
        return fraction
    return min(1.0, max(0.0, fraction + rate * (target - success)))
