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
