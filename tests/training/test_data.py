"""`task.golden_model`: items without a golden answer get one from another local model through the rollout
engine, verified and cached; rejections are counted and cached too."""

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
