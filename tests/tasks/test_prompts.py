"""Prompt rendering with the real SmolLM2 tokenizer and chat template."""

import pytest
from transformers import AutoTokenizer

from gcpo.models import tiny_dir
from gcpo.tasks import SYSTEM_PROMPT, TaskItem, render_negative_prompts, render_prompts, render_response
from gcpo.tasks.prompts import NEGATIVE_INSTRUCTION

ITEM = TaskItem("t:1", "Calculate 3 + 45.", "48", "3 + 45 = 48.\n<answer>48</answer>", "basic_arithmetic")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_dir())


def test_prompt_uses_the_chat_template_and_system_prompt(tokenizer):
    (ids,) = render_prompts(tokenizer, [ITEM])
    text = tokenizer.decode(ids)
    assert text == (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{ITEM.question}<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert "<answer></answer>" in SYSTEM_PROMPT
    assert ids == list(tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ITEM.question}],
        add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])


def test_prompts_keep_item_order(tokenizer):
    other = TaskItem("t:2", "Calculate 1 + 1.", "2", None, "basic_arithmetic")
    a, b = render_prompts(tokenizer, [ITEM, other])
    assert "3 + 45" in tokenizer.decode(a) and "1 + 1" in tokenizer.decode(b)


def test_response_tokens_round_trip_without_eos(tokenizer):
    ids = render_response(tokenizer, ITEM.golden)
    assert tokenizer.decode(ids) == ITEM.golden
    assert tokenizer.eos_token_id not in ids


def test_negative_prompts(tokenizer):
    wrong, empty = (tokenizer.decode(render_negative_prompts(tokenizer, [ITEM], m)[0]) for m in ("wrong", "empty"))
    assert f"{ITEM.question}\n{NEGATIVE_INSTRUCTION}<|im_end|>" in wrong
    assert "<|im_start|>user\n<|im_end|>" in empty and ITEM.question not in empty
    with pytest.raises(ValueError, match="guidance_negative"):
        render_negative_prompts(tokenizer, [ITEM], "nope")
