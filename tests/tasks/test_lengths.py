"""Rows against the model's context: the row named by FILE:LINE (or built-in item) and its lengths, or skipped and
counted with skip_bad_rows. The real SmolLM2 tokenizer (the tiny model's)."""

import json
import logging

import pytest
from transformers import AutoTokenizer

from gcpo.config import TaskConfig
from gcpo.models import tiny_dir
from gcpo.tasks import Task, TaskDataError, TaskItem, fit_to_context, item_location, load_splits, render_prompts
from gcpo.tasks.lengths import find_too_long

LONG_QUESTION = "What is " + " + ".join(["1"] * 400) + "?"  # ~800 tokens


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_dir())


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def short(i):
    return {"question": f"What is {i} + {i}?", "answer": str(2 * i)}


def jsonl_train(tmp_path, rows, **kw):
    path = write_rows(tmp_path / "data.jsonl", rows)
    train, _ = load_splits(TaskConfig(name="jsonl", path=str(path), eval_size=0, **kw))
    return train


def test_over_long_prompt_names_file_line_and_lengths(tmp_path, tokenizer):
    train = jsonl_train(tmp_path, [short(1), short(2), {"question": LONG_QUESTION, "answer": "400"}, short(3)])
    with pytest.raises(TaskDataError) as e:
        fit_to_context(train, tokenizer, max_model_len=512, max_new_tokens=64)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'data.jsonl'}:3: the prompt has ")
    assert "+ rollout.max_new_tokens 64 = " in message and "> the model's context of 512 tokens" in message
    assert "task.skip_bad_rows=true" in message and "\n" not in message


def test_prompt_that_fits_only_without_the_new_tokens_fails(tmp_path, tokenizer):
    train = jsonl_train(tmp_path, [short(1)])
    (prompt,) = [len(p) for p in render_prompts(tokenizer, train.items)]
    assert fit_to_context(train, tokenizer, max_model_len=prompt + 8, max_new_tokens=8) is train
    with pytest.raises(TaskDataError, match=r"data.jsonl:1: the prompt has \d+ tokens \+ rollout.max_new_tokens 9"):
        fit_to_context(train, tokenizer, max_model_len=prompt + 8, max_new_tokens=9)


def test_counts_the_other_rows_that_do_not_fit(tmp_path, tokenizer):
    long_row = {"question": LONG_QUESTION, "answer": "400"}
    train = jsonl_train(tmp_path, [short(1), long_row, long_row | {"question": LONG_QUESTION + " "}, short(2)])
    with pytest.raises(TaskDataError, match=r"data.jsonl:2: .*\(1 more of 4 rows do not fit either\)"):
        fit_to_context(train, tokenizer, max_model_len=512, max_new_tokens=8)


def test_over_long_golden_answer_fails_for_training_only(tmp_path, tokenizer):
    golden = "1 + 1 = 2. " * 200 + "<answer>2</answer>"
    train = jsonl_train(tmp_path, [short(1), {"question": "What is 1 + 1?", "answer": "2", "golden": golden}])
    with pytest.raises(TaskDataError, match=r"data.jsonl:2: the prompt has \d+ tokens \+ the golden answer \d+"):
        fit_to_context(train, tokenizer, max_model_len=512, max_new_tokens=8)
    held_out = Task(train.name, "held_out", train.items, train.verifier, source=train.source)
    assert fit_to_context(held_out, tokenizer, max_model_len=512, max_new_tokens=8) is held_out


def test_skip_bad_rows_drops_and_counts(tmp_path, tokenizer, caplog):
    rows = [{"question": "q", "answer": "1", "task": "chess"}, short(1), {"question": LONG_QUESTION, "answer": "400"},
            short(2)]
    train = jsonl_train(tmp_path, rows, skip_bad_rows=True)
    assert train.skipped_rows == 1  # the malformed row, at load
    with caplog.at_level(logging.WARNING, logger="gcpo.tasks.lengths"):
        fitted = fit_to_context(train, tokenizer, max_model_len=512, max_new_tokens=8, skip_bad_rows=True)
    assert [it.id for it in fitted.items] == ["data.jsonl:2", "data.jsonl:4"]
    assert fitted.skipped_rows == 2 and fitted.source == train.source
    assert "skipped 1 row(s) that do not fit" in caplog.text and "data.jsonl:3" in caplog.text


def test_builtin_item_is_named_by_task_split_and_index(tokenizer):
    items = [TaskItem(f"basic_arithmetic/train/1234/{i}", q, "2", None, "basic_arithmetic")
             for i, q in enumerate(["What is 1 + 1?", LONG_QUESTION])]
    task = Task("basic_arithmetic", "train", items, "basic_arithmetic")
    assert item_location(task, 1) == "task basic_arithmetic (train split) item 1 (id basic_arithmetic/train/1234/1)"
    with pytest.raises(TaskDataError, match=r"^task basic_arithmetic \(train split\) item 1 .*: the prompt has"):
        fit_to_context(task, tokenizer, max_model_len=512, max_new_tokens=8)


def test_find_too_long_is_pure():
    task = Task("t", "train", [TaskItem(f"f.jsonl:{i}", "q", "1", None, "math") for i in (1, 2, 3, 4)], "math",
                source="/data/f.jsonl")
    prompts = [[0] * 95, [0] * 96, [0] * 10, [0] * 10]
    goldens = [None, None, [0] * 90, [0] * 91]
    bad = find_too_long(task, prompts, goldens, max_model_len=100, max_new_tokens=5)
    assert [(b.index, b.location) for b in bad] == [(1, "/data/f.jsonl:2"), (3, "/data/f.jsonl:4")]
    assert bad[0].reason == ("the prompt has 96 tokens + rollout.max_new_tokens 5 = 101 > the model's context of "
                             "100 tokens")
    assert bad[1].reason == "the prompt has 10 tokens + the golden answer 91 = 101 > the model's context of 100 tokens"
