"""The trial's fixed costs cut, on the tiny model: the step-0 evaluation computed once (`trainer.eval_reuse`,
`gcpo.eval_cache`), the intermediate evaluations greedy only (`trainer.eval_intermediate=greedy`), the
generators started while the policy is built (`trainer.overlap_startup`) and the first of two mini-batches' old
log-probs taken from its own forward (`trainer.fuse_old_logprobs`). A run with all four equals today's (no reuse,
full intermediate evaluations, generators started after the policy, a no-grad pass over every row) item by item
and metric by metric,
and leaves its training unchanged (real `fit` runs, vLLM); a changed weight file or a changed setting is evaluated again (the
rank-0 driver on the transformers engine)."""

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gcpo.config import load_config
from gcpo.eval_items import items_artifact
from gcpo.training.driver import STEP0_REUSED

pytestmark = pytest.mark.integration

# what differs between two identical runs (wall clock), and the marker itself
UNEQUAL = ("time/", "throughput/", STEP0_REUSED)


def run_overrides(tmp_path: Path) -> list[str]:
    return ["model.name=tiny", "rollout.backend=vllm", "rollout.prompts_per_step=2", "rollout.group_size=2",
            "rollout.max_new_tokens=8", "rollout.memory_fraction=0.05", "task.train_size=16", "task.eval_size=4",
            "trainer.steps=2", "trainer.mini_batches=2", "trainer.eval_every=1", "trainer.eval_k=2", "trainer.checkpoint_every=1",
            f"trainer.eval_cache_dir={tmp_path / 'eval-cache'}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            "tracking.experiment=reuse", "tracking.log_rollouts_every=0"]


def logged(client: MlflowClient, run_id: str, tmp_path: Path) -> dict:
    """Every metric's history, and the text of each per-item artifact, of one run."""
    metrics = {key: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
               for key in client.get_run(run_id).data.metrics}
    folder = tmp_path / run_id
    folder.mkdir()
    items = {step: Path(client.download_artifacts(run_id, items_artifact(step), str(folder))).read_text()
             for step in (0, 1, 2)}
    return {"metrics": metrics, "items": items}


def test_a_reused_step0_evaluation_and_greedy_intermediate_ones_change_no_metric(tmp_path, ray_local):
    from gcpo.training.fit import fit

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    fresh, reused = (
        logged(client, fit(load_config(preset="gcpo", overrides=[*run_overrides(tmp_path), *extra]), run_name=name,
                           base=tmp_path).mlflow_run_id, tmp_path)
        for name, extra in (("fresh", ["trainer.overlap_startup=false", "trainer.fuse_old_logprobs=false"]),
                            ("reused", ["trainer.eval_intermediate=greedy", "trainer.overlap_startup=true",
                                        "trainer.fuse_old_logprobs=true"])))
    assert fresh["metrics"][STEP0_REUSED] == [(0, 0.0)] and reused["metrics"][STEP0_REUSED] == [(0, 1.0)]
    assert len(list((tmp_path / "eval-cache" / "step0").glob("*.json"))) == 1
    # the same per-item results at step 0, byte for byte, and the same step-0 metrics
    assert reused["items"][0] == fresh["items"][0]
    assert len(json.loads(fresh["items"][0])["data"]) == 4
    step0 = {k: v[0] for k, v in fresh["metrics"].items() if k.startswith("eval/")}
    assert step0 and all(step == 0 for step, _ in step0.values())
    assert {k: reused["metrics"][k][0] for k in step0} == step0
    # the intermediate evaluation (step 1): greedy only in the second run, its greedy results the same
    full, greedy = (json.loads(run["items"][1]) for run in (fresh, reused))
    column = full["columns"].index("mean_at_k")
    assert all(row[column] is None for row in greedy["data"]) and all(row[column] is not None for row in full["data"])
    assert [row[:column] + row[column + 1:] for row in greedy["data"]] == [
        row[:column] + row[column + 1:] for row in full["data"]]
    sampled = "eval/basic_arithmetic/mean_at_2"
    assert [s for s, _ in fresh["metrics"][sampled]] == [0, 1, 2] and [s for s, _ in reused["metrics"][sampled]] == [0, 2]
    # and the rest of the run is the same: every training metric (every sample is seeded by step, not by the
    # engine's history; up to the last bits of the generators' log-probs, whose prompt KV cache the fresh run's
    # evaluation had filled in another batch) and the final evaluation, item by item
    same = {(k, step): value for k, history in fresh["metrics"].items() if not k.startswith(UNEQUAL)
            for step, value in history if (k, step) != (sampled, 1)}
    assert {(k, step): value for k, history in reused["metrics"].items() if not k.startswith(UNEQUAL)
            for step, value in history} == pytest.approx(same, rel=1e-5, abs=1e-6)
    assert reused["items"][2] == fresh["items"][2]


def step0(cfg, run_name: str) -> tuple[dict, float]:
    """The rank-0 driver's evaluation before training alone: (its metrics, the reuse marker logged)."""
    from transformers import AutoTokenizer

    from gcpo.models import resolve_model
    from gcpo.training.checkpoint import Restored
    from gcpo.training.driver import Rank0Driver

    model_dir = resolve_model(cfg.model)
    driver = Rank0Driver(cfg, {"run_name": run_name}, model_dir, AutoTokenizer.from_pretrained(model_dir), Restored())
    try:
        before = driver.evaluate_before()
        driver.logger.finish()
    finally:
        driver.close()
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    (marker,) = client.get_metric_history(driver.run_id, STEP0_REUSED)
    return before, marker.value


def test_a_changed_weight_file_or_setting_is_evaluated_again(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from gcpo.models import tiny_dir

    model = tmp_path / "model"
    shutil.copytree(tiny_dir(), model)
    overrides = [f"model.name={model}", "rollout.backend=transformers", "task.train_size=16", "task.eval_size=4",
                 "trainer.eval_k=2", "rollout.max_new_tokens=8", f"trainer.eval_cache_dir={tmp_path / 'cache'}",
                 f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.experiment=reuse"]
    cfg = load_config(preset="gcpo", overrides=overrides)
    first, marker = step0(cfg, "first")
    assert marker == 0.0
    again, marker = step0(cfg, "again")
    assert marker == 1.0 and again == first
    assert step0(load_config(preset="gcpo", overrides=[*overrides, "task.eval_size=3"]), "fewer")[1] == 0.0
    assert step0(load_config(preset="gcpo", overrides=[*overrides, "trainer.eval_reuse=false"]), "off") == (first, 0.0)
    weights = load_file(model / "model.safetensors")
    name = next(k for k in weights if k.endswith("mlp.down_proj.weight"))
    weights[name] = weights[name] + 1e-3 * torch.ones_like(weights[name])  # one tensor of the one weight file
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    assert step0(cfg, "changed")[1] == 0.0
    assert step0(cfg, "changed-again")[1] == 1.0  # the changed model's own result is stored in turn
