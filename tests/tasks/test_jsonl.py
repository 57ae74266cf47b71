"""JSONL task files: rows, errors naming FILE:LINE, skipped-row counting, splits."""

import json
import logging

import pytest

from gcpo.config import ConfigError, TaskConfig
from gcpo.tasks import TaskDataError, load_splits, read_jsonl


def write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


GOOD = [
    {"question": "What is 1/2 of 1?", "answer": "1/2"},
    {"question": "Two plus two?", "answer": 4, "golden": "2 + 2 = 4.\n<answer>4</answer>", "source": "x"},
    {"question": "Calculate 3 - 5.", "answer": "-2", "task": "basic_arithmetic"},
]


def test_reads_rows_with_defaults_and_extra_fields(tmp_path):
    rows = read_jsonl(write(tmp_path / "data.jsonl", GOOD + [""]))
    assert rows.skipped == []
    a, b, c = rows.items
    assert (a.id, a.answer, a.golden, a.verifier) == ("data.jsonl:1", "1/2", None, "math")
    assert (b.answer, b.golden, b.metadata) == ("4", "2 + 2 = 4.\n<answer>4</answer>", {"source": "x"})
    assert c.verifier == "basic_arithmetic"


def test_gsm8k_answer_gives_reference_and_golden(tmp_path):
    row = {"question": "Natalia...?",
           "answer": "She sold 48/2 = <<48/2=24>>24.\nIn all 48+24 = <<48+24=72>>72.\n#### 72"}
    (item,) = read_jsonl(write(tmp_path / "gsm8k.jsonl", [row])).items
    assert item.answer == "72"
    assert item.golden == "She sold 48/2 = 24.\nIn all 48+24 = 72.\n<answer>72</answer>"


BAD = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ({"answer": "1"}, "missing field 'question'"),
    ({"question": "q"}, "missing field 'answer'"),
    ({"question": "  ", "answer": "1"}, "field 'question' is empty"),
    ({"question": 3, "answer": "1"}, "field 'question' must be a string, got int"),
    ({"question": "q", "answer": True}, "field 'answer' must be a string or a number, got bool"),
    ({"question": "q", "answer": "1", "task": "chess"}, "field 'task': unknown verifier 'chess'"),
    ({"question": "q", "answer": "1", "golden": "just 1"}, "field 'golden' must be a response ending"),
    ({"question": "q", "answer": "so x #### 71", "golden": None}, "does not end with a '#### VALUE' line"),
    ({"question": "q", "answer": "so x\n#### "}, "field 'answer' has nothing after '####'"),
]


@pytest.mark.parametrize("line,message", BAD)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path / "bad.jsonl", [GOOD[0], line, GOOD[1]])
    with pytest.raises(TaskDataError) as e:
        read_jsonl(path)
    assert str(e.value).startswith(f"{path}:2: ")
    assert message in str(e.value)
    assert "task.skip_bad_rows" in str(e.value)


def test_skip_bad_rows_counts_and_logs(tmp_path, caplog):
    path = write(tmp_path / "mixed.jsonl", [GOOD[0], "{oops", {"question": "q"}, GOOD[1], {"answer": 2}])
    with caplog.at_level(logging.WARNING, logger="gcpo.tasks.jsonl"):
        rows = read_jsonl(path, skip_bad_rows=True)
    assert [item.id for item in rows.items] == ["mixed.jsonl:1", "mixed.jsonl:4"]
    assert [m.split(": ", 1)[0] for m in rows.skipped] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert "skipped 3 bad row(s)" in caplog.text


def test_missing_file(tmp_path):
    with pytest.raises(TaskDataError, match="not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def make_rows(n, start=0):
    return [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(start, start + n)]


def test_jsonl_splits_hold_out_a_seeded_draw(tmp_path):
    path = write(tmp_path / "mine.jsonl", make_rows(30) + ["{bad"])
    cfg = TaskConfig(name="jsonl", path=str(path), eval_size=10, train_size=100, seed=1, skip_bad_rows=True)
    train, held_out = load_splits(cfg)
    assert (train.name, len(train), len(held_out), train.skipped_rows) == ("mine", 20, 10, 1)
    assert not {i.question for i in train.items} & {i.question for i in held_out.items}
    assert load_splits(cfg) == (train, held_out)
    other = load_splits(TaskConfig(name="jsonl", path=str(path), eval_size=10, seed=2, skip_bad_rows=True))[1]
    assert other.items != held_out.items


def test_jsonl_eval_path_and_train_cap(tmp_path):
    train_path = write(tmp_path / "train.jsonl", make_rows(30))
    eval_path = write(tmp_path / "test.jsonl", make_rows(5, start=25))  # 5 questions also in train
    cfg = TaskConfig(name="jsonl", path=str(train_path), eval_path=str(eval_path), train_size=12)
    train, held_out = load_splits(cfg)
    assert [i.id for i in held_out.items] == [f"test.jsonl:{n}" for n in range(1, 6)]
    assert len(train) == 12 and not {i.question for i in train.items} & {i.question for i in held_out.items}


def test_jsonl_eval_size_too_large_is_a_config_error(tmp_path):
    path = write(tmp_path / "tiny.jsonl", make_rows(5))
    with pytest.raises(ConfigError, match="task.eval_size"):
        load_splits(TaskConfig(name="jsonl", path=str(path), eval_size=5))
