"""Bounded staleness and prefix hints end to end on the tiny model: a real vLLM generator, Ray Train, DeepSpeed,
MLflow. With `rollout.max_staleness=1` the batch of step t was sampled with the weights of version t - 1 (the
first with the start weights), every trained response records its version, and the trainer's sync check covers
the rows sampled with its own weights while the gap on older rows is reported apart. The `ga_hint` preset hints
the tiny model's all-wrong groups (a random model is never right) and trains on the continuations."""

import json

import pytest
from mlflow.tracking import MlflowClient

from gcpo.config import load_config

pytestmark = pytest.mark.integration

STEPS = 3


def rollout_table(client: MlflowClient, run_id: str, step: int, folder) -> list[dict]:
    path = client.download_artifacts(run_id, f"rollouts/step_{step:05d}.json", str(folder))
    table = json.loads(open(path).read())
    return [dict(zip(table["columns"], row)) for row in table["data"]]


def test_staleness_one_with_prefix_hints_on_a_vllm_generator(tmp_path, ray_local):
    from gcpo.training.fit import fit

    cfg = load_config(preset="ga_hint", overrides=[
        "model.name=tiny", "rollout.backend=vllm", "rollout.prompts_per_step=2", "rollout.group_size=4",
        "rollout.max_new_tokens=8", "rollout.max_staleness=1", "task.train_size=16", "task.eval_size=2",
        f"trainer.steps={STEPS}", "trainer.eval_every=0", "trainer.checkpoint_every=2", "trainer.lr=1e-3",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.log_rollouts_every=1",
    ])
    outcome = fit(cfg, run_name="stale", base=tmp_path)
    client = MlflowClient(tracking_uri=outcome.tracking_uri)
    run_id = outcome.mlflow_run_id
    metric = lambda key: [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]  # noqa: E731
    assert metric("batch/staleness_max") == [0.0, 1.0, 1.0]
    assert metric("batch/dropped_stale") == [0.0] * STEPS
    for step in range(STEPS):  # every trained response: sampled with version max(0, step - 1), recorded
        rows = rollout_table(client, run_id, step + 1, tmp_path / f"table{step}")
        assert rows and {r["version"] for r in rows} == {max(0, step - 1)}, step
        assert any(r["hint_tokens"] > 0 for r in rows)  # all-wrong groups got hints
    # the sync check: rows sampled with the trainer's own weights (step 1 only) agree; older rows are off-policy
    assert [m.step for m in client.get_metric_history(run_id, "sync/logprob_abs_diff")] == [1]
    assert metric("sync/logprob_abs_diff")[0] < 1e-2
    assert len(metric("offpolicy/logprob_abs_diff")) == STEPS - 1
    assert 0 < metric("rollout/overlap_frac")[0] <= 1
    assert metric("hint/groups_frac")[0] > 0 and len(metric("hint/fraction")) == STEPS
    fractions = metric("hint/fraction")  # all wrong at every step: the controller lengthens the hint each time
    assert fractions[0] == 0.5 and all(b >= a for a, b in zip(fractions, fractions[1:]))
