"""Prompt rendering: the model's own chat template, a system prompt asking for the tagged answer.

Prompts travel as token ids (`gcpo.rollout.types`), so the trainer and the generators see the same tokens.
The text is rendered with `apply_chat_template(..., tokenize=False, add_generation_prompt=True)` and then
tokenized without adding special tokens (the template already has them); this is identical to tokenizing in
the template call and does not depend on that call's return type, which changed across transformers versions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from gcpo.algorithms.choices import GuidanceNegative
from gcpo.tasks.types import TaskItem

SYSTEM_PROMPT = (
    "You are a careful math assistant. Reason briefly, step by step, then write the final answer inside "
    "<answer></answer> tags, for example <answer>42</answer>. Put only the final value inside the tags."
)


def chat_messages(item: TaskItem, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The conversation sent to the model: the system prompt, then the question as the user turn."""
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": item.question}]


def render_prompt_text(tokenizer: Any, item: TaskItem, system_prompt: str = SYSTEM_PROMPT) -> str:
    """The prompt as text, ending with the template's assistant header (the generation prompt)."""
    return tokenizer.apply_chat_template(chat_messages(item, system_prompt), tokenize=False,
                                         add_generation_prompt=True)


def render_prompts(tokenizer: Any, items: Sequence[TaskItem], system_prompt: str = SYSTEM_PROMPT) -> list[list[int]]:
    """Prompt token ids for each item, in order."""
    texts = [render_prompt_text(tokenizer, item, system_prompt) for item in items]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


NEGATIVE_INSTRUCTION = "Answer this question incorrectly: give a wrong final value on purpose."


def negative_item(item: TaskItem, mode: GuidanceNegative) -> TaskItem:
    """The item behind the guidance-contrastive *negative* prompt (docs/algorithms.md): `wrong` appends
    `NEGATIVE_INSTRUCTION` to the question; `empty` removes the question (the user turn is empty)."""
    if mode == "wrong":
        return replace(item, question=f"{item.question}\n{NEGATIVE_INSTRUCTION}")
    if mode == "empty":
        return replace(item, question="")
    raise ValueError(f"algorithm.guidance_negative must be 'wrong' or 'empty', got {mode!r}")


def render_negative_prompts(tokenizer: Any, items: Sequence[TaskItem], mode: GuidanceNegative,
                            system_prompt: str = SYSTEM_PROMPT) -> list[list[int]]:
    """Negative-prompt token ids for each item, rendered exactly like `render_prompts` (same system prompt)."""
    return render_prompts(tokenizer, [negative_item(item, mode) for item in items], system_prompt)


def render_response(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a response written by hand (a golden answer) as the policy would emit it after the prompt.
    No EOS is appended: sampled responses end at the `</answer>` stop string without one, and a golden answer
    must look like them."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
