"""The rank-0 driver's progress arithmetic: evaluations still to come and the ETA that counts them."""

from gcpo.training.driver import evaluations_after, progress_line


def test_evaluations_after_a_step_count_the_mid_run_ones_and_the_final_one():
    # 8 steps, evaluation every 4: before training, after step 4 (index 3), after training
    assert [evaluations_after(s, 8, 4) for s in range(8)] == [2, 2, 2, 1, 1, 1, 1, 1]
    assert evaluations_after(0, 8, 0) == 0  # evaluation off
    assert evaluations_after(7, 8, 8) == 1  # only the final one (step 8 is the last: no mid-run one)


def test_the_eta_adds_the_pending_evaluations_to_the_remaining_steps():
    line = progress_line(1, 8, {"reward/mean": 0.5, "time/step_s": 10.0}, elapsed=20.0, first_step=0, pending_s=60.0)
    assert "step 2/8" in line and "reward 0.500" in line
    assert "ETA 2m00s" in line  # 6 steps x 10 s (20 s over 2 steps) + 60 s of evaluation
    assert "ETA 1m00s" in progress_line(1, 8, {}, elapsed=20.0, first_step=0)  # without evaluations


def test_the_step0_settings_name_what_the_evaluation_depends_on_and_not_what_a_trial_varies():
    """The step-0 cache key's settings (`step0_settings`): a changed evaluation setting changes them; what the
    trials of a sweep vary (the algorithm, the learning rate, the training seed and sampling, LoRA) does not."""
    from gcpo.config import load_config
    from gcpo.training.driver import step0_settings

    base = step0_settings(load_config(preset="gcpo"))
    for change in ("task.eval_size=8", "trainer.eval_k=1", "rollout.max_new_tokens=32", "rollout.seed=1",
                   "model.dtype=bfloat16", "rollout.dtype=bfloat16", "rollout.backend=transformers",
                   "task.verify_timeout_s=1.0"):
        assert step0_settings(load_config(preset="gcpo", overrides=[change])) != base, change
    for same in ("trainer.lr=1e-4", "trainer.seed=3", "rollout.group_size=8", "rollout.temperature=0.7",
                 "model.lora.rank=16", "algorithm.kl_coef=0.04", "trainer.steps=20"):
        assert step0_settings(load_config(preset="gcpo", overrides=[same])) == base, same
    assert step0_settings(load_config(preset="grpo")) == base


def test_the_eval_cache_folder_is_absolute_for_the_workers_and_defaults_under_the_gcpo_cache(tmp_path, monkeypatch):
    from pathlib import Path

    from gcpo.config import load_config
    from gcpo.training.driver import eval_cache_folder
    from gcpo.training.fit import absolutize

    monkeypatch.setenv("GCPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GCPO_EVAL_CACHE")  # the suite's own (tests/conftest.py)
    assert eval_cache_folder("") == tmp_path / "cache" / "eval"
    assert absolutize(load_config(), tmp_path).trainer.eval_cache_dir == ""  # the default stays the default
    monkeypatch.setenv("GCPO_EVAL_CACHE", str(tmp_path / "suite"))  # the driver's environment, passed to the workers
    assert eval_cache_folder("") == tmp_path / "suite"
    assert absolutize(load_config(), tmp_path).trainer.eval_cache_dir == str(tmp_path / "suite")
    cfg = absolutize(load_config(overrides=["trainer.eval_cache_dir=evals"]), tmp_path)
    assert cfg.trainer.eval_cache_dir == str(tmp_path / "evals") and Path(cfg.trainer.eval_cache_dir).is_absolute()
