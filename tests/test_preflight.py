"""The start-up check (gcpo.preflight): config against data and model before Ray starts, on the tiny model."""

import json

import pytest

from gcpo.config import ConfigError, load_config
from gcpo.preflight import VLLM_MAX_MODEL_LEN, check_run, check_runs, model_context
from gcpo.tasks import TaskDataError

LONG_QUESTION = "What is " + " + ".join(["1"] * 1200) + "?"  # over the tiny model's 2,048 tokens


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(n, long_at=(), first=1):
    return [{"question": LONG_QUESTION, "answer": "1200"} if i in long_at else
            {"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(first, first + n)]


def config(*overrides):
    return load_config(overrides=["model.name=tiny", "rollout.max_new_tokens=8", *overrides])


def test_over_long_row_fails_at_start_naming_its_line(tmp_path):
    path = write_rows(tmp_path / "data.jsonl", rows(12, long_at={7}))
    with pytest.raises(TaskDataError) as e:
        check_run(config("task.name=jsonl", f"task.path={path}", "task.eval_size=2"))
    assert str(e.value).startswith(f"{path}:7: the prompt has ")
    assert "> the model's context of 2,048 tokens" in str(e.value)


def test_relative_paths_are_read_from_base(tmp_path):
    write_rows(tmp_path / "data.jsonl", rows(12, long_at={3}))
    with pytest.raises(TaskDataError, match=r"data.jsonl:3: the prompt has"):
        check_run(config("task.name=jsonl", "task.path=data.jsonl", "task.eval_size=2"), base=tmp_path)


def test_skip_bad_rows_skips_and_counts_over_long_rows(tmp_path):
    path = write_rows(tmp_path / "data.jsonl", rows(12, long_at={2, 9}))
    found = check_run(config("task.name=jsonl", f"task.path={path}", "task.eval_path=" + str(
        write_rows(tmp_path / "held.jsonl", rows(3, first=100))), "task.eval_size=3", "task.skip_bad_rows=true"))
    assert len(found.train) == 10 and found.train.skipped_rows == 2
    assert all(item.question != LONG_QUESTION for item in found.train.items)
    assert found.skipped == {"data train": 2}
    assert found.summary().endswith("rows of data fit the model's context (2,048 tokens); 2 row(s) skipped")


def test_eval_size_larger_than_the_file_fails_before_ray(tmp_path):
    path = write_rows(tmp_path / "data.jsonl", rows(10))
    with pytest.raises(ConfigError, match=r"task.eval_size: 10 held-out rows would leave no training rows in "):
        check_run(config("task.name=jsonl", f"task.path={path}", "task.eval_size=10"))
    held = write_rows(tmp_path / "held.jsonl", rows(4, first=100))
    with pytest.raises(ConfigError) as e:
        check_run(config("task.name=jsonl", f"task.path={path}", f"task.eval_path={held}", "task.eval_size=5"))
    assert str(e.value) == (f"task.eval_size: 5 held-out rows asked for, but {held} has only 4 usable held-out "
                            f"row(s); lower task.eval_size")


def test_missing_eval_file_and_unknown_verifier_name_the_file(tmp_path):
    path = write_rows(tmp_path / "data.jsonl", rows(6))
    with pytest.raises(TaskDataError, match="nope.jsonl: task data file not found"):
        check_run(config("task.name=jsonl", f"task.path={path}", f"task.eval_path={tmp_path / 'nope.jsonl'}"))
    write_rows(path, rows(3) + [{"question": "q", "answer": "1", "task": "chess"}])
    with pytest.raises(TaskDataError, match=r"data.jsonl:4: field 'task': unknown verifier 'chess'"):
        check_run(config("task.name=jsonl", f"task.path={path}", "task.eval_size=1"))


def test_sizes_are_checked():
    with pytest.raises(ConfigError, match=r"task.train_size: must be >= 1"):
        check_run(config("task.train_size=0"))


def test_a_builtin_task_passes_with_its_sizes():
    found = check_run(config("task.train_size=16", "task.eval_size=4"))
    assert (len(found.train), [len(t) for t in found.held_out], found.max_model_len) == (16, [4], 2048)
    assert found.summary() == ("data checked: 16 training and 4 held-out rows of basic_arithmetic fit the model's "
                               "context (2,048 tokens)")


def test_max_new_tokens_over_the_context_fails_naming_the_first_row():
    with pytest.raises(TaskDataError, match=r"^task basic_arithmetic \(train split\) item 0 .*max_new_tokens 2,048"):
        check_run(config("task.train_size=4", "task.eval_size=2", "rollout.max_new_tokens=2048"))


def test_model_context_caps_vllm_only(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 8192}))
    assert model_context(tmp_path, "vllm") == VLLM_MAX_MODEL_LEN == 2048
    assert model_context(tmp_path, "transformers") == 8192


def test_check_runs_checks_each_data_setting_once(tmp_path):
    path = write_rows(tmp_path / "data.jsonl", rows(12, long_at={5}))
    good = config("task.train_size=4", "task.eval_size=2")
    found = check_runs([good, config("task.train_size=4", "task.eval_size=2", "algorithm.kl_coef=0.1"), good])
    assert len(found) == 1
    with pytest.raises(TaskDataError, match=r"data.jsonl:5"):
        check_runs([good, config("task.name=jsonl", f"task.path={path}", "task.eval_size=2")])


def test_a_lora_target_the_model_lacks_is_refused_before_ray_starts():
    cfg = load_config(preset="gcpo", overrides=["model.name=tiny", "task.train_size=4", "task.eval_size=2",
                                                "model.lora.rank=4", "model.lora.target_modules=[q_proj, c_attn]"])
    with pytest.raises(ConfigError, match=r"model.lora.target_modules: \['c_attn'\]"):
        check_run(cfg)
