"""The `gcpo` command's errors: bad input found before Ray starts and said in one line naming FILE:LINE or the key;
an error raised inside a Ray worker reaches the user as its own message, once, without Ray's traceback wall."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from gcpo.cli import main

LONG_QUESTION = "What is " + " + ".join(["1"] * 1200) + "?"  # over the tiny model's 2,048 tokens
TINY = ["model.name=tiny", "rollout.max_new_tokens=8", "trainer.steps=1"]


def write_rows(path, n, long_at=()):
    path.write_text("".join(json.dumps({"question": LONG_QUESTION, "answer": "1200"} if i in long_at else
                                       {"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(1, n + 1)))
    return path


def test_train_with_an_over_long_row_fails_at_start_naming_its_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "data.jsonl", 12, long_at={3})
    assert main(["train", *TINY, "task.name=jsonl", "task.path=data.jsonl", "task.eval_size=2"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"gcpo train: error: data.jsonl:3: the prompt has [\d,]+ "
                        r"tokens \+ rollout.max_new_tokens 8 = [\d,]+ > the model's context of 2,048 tokens; shorten "
                        r"the row, lower rollout.max_new_tokens, or set task.skip_bad_rows=true to skip such rows\n", err)
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def test_train_with_eval_size_over_the_file_fails_before_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "data.jsonl", 5)
    assert main(["train", *TINY, "task.name=jsonl", "task.path=data.jsonl", "task.eval_size=50"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gcpo train: config error: task.eval_size: 50 held-out rows would leave no training rows")
    assert err.count("\n") == 1 and not ray.is_initialized()


def test_eval_with_an_over_long_row_fails_before_any_engine(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "held.jsonl", 4, long_at={2})
    assert main(["eval", "--no-mlflow", "--tasks", "held.jsonl", *TINY, "task.eval_size=4"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("gcpo eval: error: held.jsonl:2: the prompt has ")
    assert captured.err.count("\n") == 1 and captured.out == "" and not ray.is_initialized()


@pytest.mark.integration
def test_an_error_raised_in_a_worker_reaches_the_user_as_one_line(tmp_path):
    """The MLflow store cannot be created (its folder is a file): rank 0 fails inside its Ray Train worker."""
    (tmp_path / "taken").write_text("a file, not a folder")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "GCPO_VERBOSE")}
    gcpo = Path(sys.executable).parent / "gcpo"
    out = subprocess.run(
        [str(gcpo), "train", *TINY, "rollout.backend=transformers", "task.train_size=4", "task.eval_size=1",
         "trainer.eval_every=0", "rollout.prompts_per_step=2", "rollout.group_size=2",
         f"tracking.uri=sqlite:///{tmp_path}/taken/mlflow.db"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    # the start-up check's line, then the worker's error once, on one line: no Ray traceback wall
    assert len(lines) == 2, out.stdout + out.stderr
    assert lines[0].startswith("[gcpo] data checked: ")
    assert lines[1].startswith("gcpo train: error: ") and "taken" in lines[1]
    assert lines[1].endswith("(--verbose shows the traceback)")


def test_the_closing_table_says_when_no_held_out_evaluation_ran(tmp_path):
    """`trainer.eval_every=0`: no `eval/*` metric, so the before/after table says why it is empty."""
    from gcpo.commands.train_cmd import before_after_table
    from gcpo.tracking.training_run import TrainingRunLogger

    logger = TrainingRunLogger(f"sqlite:///{tmp_path}/mlflow.db", "e", run_name="r", params={})
    logger.log_metrics({"loss": 1.0}, step=1)
    assert before_after_table(logger.uri, logger.run_id, eval_every=0) == (
        "no held-out evaluation ran (trainer.eval_every=0), so there is no before/after table")
    logger.log_metrics({"eval/arith/pass_at_1": 0.25}, step=0)
    logger.log_metrics({"eval/arith/pass_at_1": 0.5}, step=2)
    table = before_after_table(logger.uri, logger.run_id, eval_every=2).splitlines()
    assert table[0].split() == ["held-out", "metric", "before", "after"]
    assert table[1].split() == ["eval/arith/pass_at_1", "0.250", "0.500"]
