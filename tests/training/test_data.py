"""Rank 0's training data: `task.golden_model` fills missing golden answers (through another local model's rollout
engine, verified and cached; rejections counted and cached too), and no row that cannot fit the context is kept."""

import json

import pytest
from transformers import AutoTokenizer

from gcpo.config import load_config
from gcpo.models import tiny_dir
from gcpo.training.data import build_training_data

pytestmark = pytest.mark.integration


def test_golden_model_fills_missing_answers_through_the_engine(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GCPO_CACHE", str(tmp_path / "cache"))
    rows = tmp_path / "user.jsonl"
    rows.write_text("\n".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)})
                              for i in range(1, 7)) + "\n")
    cfg = load_config(overrides=["task.name=jsonl", f"task.path={rows}", "task.eval_size=2",
                                 "task.golden_model=tiny", "rollout.backend=transformers",
                                 "rollout.max_new_tokens=8"])
    tiny_dir()  # built under the test's cache
    data = build_training_data(cfg, AutoTokenizer.from_pretrained(tiny_dir()))
    out = capsys.readouterr().out
    # a random tiny model never writes a correct, well-formed answer: every candidate is rejected and counted
    assert "golden answers from tiny: 0 accepted, 4 rejected" in out
    assert data.golden_ids == [None] * 4
    caches = list((tmp_path / "cache" / "golden").glob("*.json"))
    assert len(caches) == 1 and len(json.loads(caches[0].read_text())["entries"]) == 4
    build_training_data(cfg, AutoTokenizer.from_pretrained(tiny_dir()))
    assert "(4 from the cache" in capsys.readouterr().out  # the rerun asks the model nothing


@pytest.mark.parametrize("skip", [False, True], ids=["fails", "skips"])
def test_training_data_never_holds_a_row_that_cannot_fit_the_context(tmp_path, skip):
    """The worker applies the same context check as the start-up check: a row that cannot fit is never drawn."""
    from gcpo.tasks import TaskDataError

    long_question = "What is " + " + ".join(["1"] * 1200) + "?"  # over 2,048 tokens
    rows = [{"question": long_question if i == 3 else f"What is {i} + {i}?", "answer": str(2 * i)}
            for i in range(1, 9)]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(overrides=["model.name=tiny", "task.name=jsonl", f"task.path={path}", "task.eval_size=2",
                                 f"task.skip_bad_rows={str(skip).lower()}", "rollout.max_new_tokens=8"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir())
    if not skip:
        with pytest.raises(TaskDataError, match=f"{path}:3: the prompt has"):
            build_training_data(cfg, tokenizer, max_model_len=2048)
        return
    data = build_training_data(cfg, tokenizer, max_model_len=2048)
    assert len(data.questions) == 5 and long_question not in data.questions  # 8 rows - 2 held out - 1 too long
    assert max(len(p) for p in data.prompt_ids) + 8 <= 2048


def test_skipped_rows_are_said_once_by_the_start_up_check_not_again_by_the_worker(tmp_path, monkeypatch, caplog):
    """`task.skip_bad_rows=true`: the driver's check says what it skipped (a malformed row, a row too long for the
    context); the worker, reading the same file after `mark_data_checked`, says nothing more."""
    import logging

    from gcpo import console
    from gcpo.preflight import check_run
    from gcpo.training.data import held_out_tasks

    long_question = "What is " + " + ".join(["1"] * 1200) + "?"  # over 2,048 tokens
    lines = [json.dumps({"question": long_question if i == 3 else f"What is {i} + {i}?", "answer": str(2 * i)})
             for i in range(1, 11)]
    lines[5] = "{not json"
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg = load_config(overrides=["model.name=tiny", "task.name=jsonl", f"task.path={path}", "task.eval_size=2",
                                 "task.skip_bad_rows=true", "rollout.max_new_tokens=8"])
    monkeypatch.setenv(console.VERBOSE_ENV, "0")
    monkeypatch.delenv(console.DATA_CHECKED_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="gcpo.tasks"):
        checked = check_run(cfg)
        said = [r.getMessage() for r in caplog.records]
        assert sum(checked.skipped.values()) == 2 and len(said) == 2  # the malformed row, the long one
        console.mark_data_checked()
        caplog.clear()
        tokenizer = AutoTokenizer.from_pretrained(tiny_dir())
        data = build_training_data(cfg, tokenizer, max_model_len=checked.max_model_len)
        held_out = held_out_tasks(cfg, tokenizer, checked.max_model_len)
    assert len(data.questions) == len(checked.train) and len(held_out[0]) == len(checked.held_out[0])
    assert [r.getMessage() for r in caplog.records] == []
