"""End to end on the tiny model: 2 training workers with ZeRO-2 + 1 vLLM generator, 3 steps, `model.dtype=auto`,
logged to a real MLflow tracking server on 127.0.0.1 (sqlite backend), read back through MlflowClient."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gcpo.config import load_config
from gcpo.eval_items import items_artifact
from gcpo.hardware import resolve_dtype
from gcpo.rollout.agreement import sync_tolerance

pytestmark = pytest.mark.integration

STEP_METRICS = [
    "reward/mean", "reward/accuracy", "reward/format", "groups/all_wrong_frac", "groups/all_correct_frac",
    "ga/injected_frac", "ga/rejected", "loss/policy", "policy/clip_frac", "policy/entropy", "grad/norm",
    "response/length_mean", "sync/logprob_abs_diff", "time/rollout_s", "time/update_s", "time/sync_s",
    "time/step_s", "throughput/rollout_tokens_per_s",
]


def test_two_zero2_workers_one_vllm_generator_three_steps(tmp_path, mlflow_server, ray_local):
    from gcpo.training.fit import fit

    cfg = load_config(preset="gcpo", overrides=[
        "model.name=tiny", "model.dtype=auto", "rollout.backend=vllm", "rollout.num_generators=1", "rollout.prompts_per_step=4",
        "rollout.group_size=2", "rollout.max_new_tokens=8", "rollout.memory_fraction=0.05", "task.train_size=16",
        "task.eval_size=4",
        "trainer.num_workers=2", "trainer.zero_stage=2", "trainer.cpus_per_worker=0.5", "trainer.steps=3",
        "trainer.eval_every=3", "trainer.eval_k=2", "trainer.checkpoint_every=3", "algorithm.kl_coef=0.01",
        f"tracking.uri={mlflow_server}", "tracking.experiment=e2e", "tracking.log_rollouts_every=3",
    ])
    outcome = fit(cfg, run_name="e2e", base=tmp_path)
    assert outcome.metrics["step"] == 3
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(outcome.mlflow_run_id)
    params = run.data.params
    assert params["algorithm.golden_answers"] == "True"
    assert params["algorithm.ratio_level"] == "sequence"
    assert params["algorithm.kl_coef"] == "0.01"
    assert params["trainer.zero_stage"] == "2" and params["trainer.num_workers"] == "2"
    # model.dtype=auto: the request kept, what ran beside it (this machine's choice; rollout.dtype=auto follows)
    resolved = resolve_dtype("auto").dtype
    assert params["model.dtype"] == "auto"
    assert params["model.dtype_resolved"] == params["rollout.dtype_resolved"] == resolved
    for key in STEP_METRICS + ["kl/mean"]:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [1, 2, 3], key
    # the generator held the trainer's weights at every step (below the threshold of the dtype pair)
    for m in client.get_metric_history(run.info.run_id, "sync/logprob_abs_diff"):
        assert m.value <= sync_tolerance(resolved, resolved), m
    evals = [k for k in run.data.metrics if k.startswith("eval/")]
    assert any(k.endswith("pass_at_1") for k in evals) and any("mean_at_2" in k for k in evals)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts and "rollouts" in artifacts
    # each held-out evaluation's per-item results (before training and after), the final one making up pass@1
    assert {a.path for a in client.list_artifacts(run.info.run_id, "eval")} == {items_artifact(0), items_artifact(3)}
    table = json.loads(Path(client.download_artifacts(run.info.run_id, items_artifact(3), str(tmp_path))).read_text())
    correct = [row[table["columns"].index("correct")] for row in table["data"]]
    assert len(correct) == 4 and sum(correct) / 4 == run.data.metrics["eval/basic_arithmetic/pass_at_1"]
    assert run.info.status == "FINISHED"
