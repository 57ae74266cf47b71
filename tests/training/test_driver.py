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

def test_the_run_logs_the_requested_dtype_and_the_resolved_ones(capfd):
    from gcpo.config import load_config
    from gcpo.training.driver import as_requested, resolved_dtype_params
    from gcpo.training.loop import with_concrete_dtype

    asked = load_config(overrides=["model.dtype=auto"])
    ran = with_concrete_dtype(asked, rank=0)  # single process: this machine's choice
    assert ran.model.dtype in ("float32", "bfloat16") and asked.model.dtype == "auto"
    assert f"[gcpo] model.dtype=auto: {ran.model.dtype} (" in capfd.readouterr().out  # said in one line
    assert as_requested(ran, {"run": {"model": {"dtype": "auto"}}}).model.dtype == "auto"
    assert as_requested(ran, {}).model.dtype == ran.model.dtype
    assert resolved_dtype_params(ran) == {"model.dtype_resolved": ran.model.dtype,
                                          "rollout.dtype_resolved": ran.model.dtype}  # rollout.dtype=auto
    fp32_trainer = load_config(overrides=["model.dtype=float32", "rollout.dtype=bfloat16"])
    assert with_concrete_dtype(fp32_trainer, rank=0) is fp32_trainer
    assert resolved_dtype_params(fp32_trainer) == {"model.dtype_resolved": "float32",
                                                   "rollout.dtype_resolved": "bfloat16"}


def test_a_sync_gap_above_its_pair_s_threshold_is_warned_once(capfd):
    from gcpo.config import load_config
    from gcpo.rollout.agreement import sync_tolerance
    from gcpo.training.driver import Rank0Driver

    driver = Rank0Driver.__new__(Rank0Driver)  # only the check's state: no engines, data or run
    driver.cfg, driver.sync_warned = load_config(overrides=["rollout.dtype=bfloat16"]), False
    tolerance = sync_tolerance("float32", "bfloat16")
    driver.check_sync(0, {"sync/logprob_abs_diff": tolerance})  # at the threshold: in sync
    driver.check_sync(1, {})  # no rows sampled with the current weights: nothing to check
    assert capfd.readouterr().out == ""
    driver.check_sync(2, {"sync/logprob_abs_diff": 2 * tolerance})
    driver.check_sync(3, {"sync/logprob_abs_diff": 2 * tolerance})
    out = capfd.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("[gcpo] warning: step 3: sync check:") and "generators bfloat16" in out[0]
