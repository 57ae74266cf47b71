"""The response format the policy is asked to produce, and how an answer is read back out of a response. Pure.

Format: brief reasoning, then the final answer inside `<answer></answer>`. Generation stops at the closing tag
(`rollout.stop`), so a well-formed response ends with it.
"""

from __future__ import annotations

OPEN, CLOSE = "<answer>", "</answer>"


def tagged(value: str) -> str:
    """`'48'` -> `'<answer>48</answer>'`."""
    return f"{OPEN}{value}{CLOSE}"


def extract_answer(response: str) -> str | None:
    """The stripped text inside the *last* complete `<answer>...</answer>` pair, or None if there is none or
    it is empty. Linear time (two `rfind`s), so it is safe on adversarial text and runs in the caller."""
    end = response.rfind(CLOSE)
    if end < 0:
        return None
    start = response.rfind(OPEN, 0, end)
    if start < 0:
        return None
    value = response[start + len(OPEN) : end].strip()
    return value or None


def is_well_formed(response: str) -> bool:
    """True iff the response has exactly one `<answer>` and one `</answer>`, in that order, with non-empty
    text between them, and nothing but whitespace after the closing tag."""
    if response.count(OPEN) != 1 or response.count(CLOSE) != 1:
        return False
    if not response.rstrip().endswith(CLOSE):
        return False
    return extract_answer(response) is not None
