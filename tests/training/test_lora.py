"""LoRA (`model.lora.*`): only the adapters train and live in Adam, the generators' merged weights equal peft's
own merge, a checkpoint holds the adapters alone and resumes them exactly, and a checkpoint is refused by a run
with another base or other adapter settings."""

import copy

import pytest
import torch

from gcpo.config import ConfigError, load_config
from gcpo.models import tiny_dir
from gcpo.training.lora import (
    adapters_only,
    apply_lora,
    base_name,
    check_lora_file,
    merged_weights,
    scaling,
    sync_names,
    write_lora_file,
)

LORA = ["model.name=tiny", "model.lora.rank=4", "model.lora.alpha=8"]


def tiny_lora(overrides=()):
    from transformers import AutoModelForCausalLM

    cfg = load_config(preset="grpo", overrides=LORA + list(overrides))
    torch.manual_seed(0)
    return cfg, apply_lora(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.model.lora)


def perturb_adapters(model, seed=1):
    """lora_B starts at zero (the base model exactly): give every adapter a non-zero product."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def test_only_the_adapters_train_and_rank_0_leaves_the_model_alone():
    from transformers import AutoModelForCausalLM

    cfg, model = tiny_lora()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert adapted == set(cfg.model.lora.target_modules)
    plain = AutoModelForCausalLM.from_pretrained(tiny_dir())
    assert apply_lora(plain, load_config(overrides=["model.name=tiny"]).model.lora) is plain


def test_a_target_module_the_model_lacks_is_named():
    with pytest.raises(ConfigError, match=r"model.lora.target_modules: \['qkv_proj'\]"):
        tiny_lora(["model.lora.target_modules=[q_proj, qkv_proj]"])


def test_merged_weights_equal_peft_merge_and_only_adapted_layers_are_sent():
    cfg, model = tiny_lora()
    perturb_adapters(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if sync_names(k)}
    merged = merged_weights(state, scaling(cfg.model.lora))
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    suffixes = {f"{m}.weight" for m in cfg.model.lora.target_modules}
    assert set(merged) == {k for k in reference if k.rsplit(".", 2)[-2] + ".weight" in suffixes}
    for name, weight in merged.items():
        torch.testing.assert_close(weight, reference[name], rtol=0, atol=1e-6)
    # by hand for one layer: W + (alpha / rank) B A
    layer = "base_model.model.model.layers.0.self_attn.q_proj"
    a, b = state[f"{layer}.lora_A.default.weight"], state[f"{layer}.lora_B.default.weight"]
    by_hand = state[f"{layer}.base_layer.weight"] + (8 / 4) * b @ a
    torch.testing.assert_close(merged[base_name(f"{layer}.base_layer.weight")], by_hand, rtol=0, atol=1e-6)
    assert base_name(f"{layer}.base_layer.weight") == "model.layers.0.self_attn.q_proj.weight"


def test_the_lora_file_refuses_another_base_or_other_settings(tmp_path):
    cfg, _ = tiny_lora()
    write_lora_file(tmp_path, "tiny", cfg.model.lora)
    check_lora_file(tmp_path, "tiny", cfg.model.lora)  # the same: accepted
    with pytest.raises(ConfigError, match="smollm2"):
        check_lora_file(tmp_path, "smollm2-135m-instruct", cfg.model.lora)
    other = load_config(overrides=LORA + ["model.lora.rank=8"]).model.lora
    with pytest.raises(ConfigError, match="'rank': 8"):
        check_lora_file(tmp_path, "tiny", other)
    with pytest.raises(ConfigError, match="full fine-tuning"):
        check_lora_file(tmp_path, "tiny", load_config(overrides=["model.name=tiny"]).model.lora)


@pytest.mark.integration
@pytest.mark.usefixtures("single_process_group")
@pytest.mark.parametrize("zero_stage", [0, 2, 3])
def test_adam_holds_the_adapters_and_a_checkpoint_resumes_them_exactly(tmp_path, zero_stage):
    from gcpo.training.checkpoint import CKPT_TAG, checkpoint_bytes
    from gcpo.training.deepspeed_policy import build_policy, gather_state_dict, generator_weights

    cfg, model = tiny_lora(["trainer.lr=1e-2", f"trainer.zero_stage={zero_stage}"])
    base = {k: v.clone() for k, v in model.state_dict().items() if not sync_names(k) or ".base_layer." in k}
    policy_engine = build_policy(model, cfg.trainer, "float32")
    numel = lambda p: getattr(p, "ds_numel", p.numel())  # noqa: E731 - ZeRO-3 holds partitions
    adapters = [p for p in policy_engine.module.parameters() if p.requires_grad]
    if zero_stage == 0:  # ZeRO's optimizers hold flattened partitions instead
        assert len([p for group in policy_engine.optimizer.param_groups for p in group["params"]]) == len(adapters)
    adapter_numel = sum(numel(p) for p in adapters)
    assert 0 < adapter_numel < 0.2 * sum(numel(p) for p in policy_engine.module.parameters())
    ids = torch.randint(5, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        policy_engine.backward(policy_engine(input_ids=ids, labels=ids).loss)
        policy_engine.step()
    after = gather_state_dict(policy_engine)
    assert all(torch.equal(after[k], v) for k, v in base.items() if k in after)  # the base did not move
    assert any(v.abs().sum() > 0 for k, v in after.items() if ".lora_B." in k)  # the adapters did (from zero)
    assert checkpoint_bytes(policy_engine) == 3 * 4 * adapter_numel
    with adapters_only(policy_engine.module):
        policy_engine.save_checkpoint(str(tmp_path), tag=CKPT_TAG, client_state={"step": 2},
                                      exclude_frozen_parameters=True)
    assert len(policy_engine.module.state_dict()) > len(adapters)  # the hook is gone afterwards
    saved = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert saved < 3 * 4 * adapter_numel + 150_000  # adapters and Adam moments, not the model (nor the tied head)

    _, fresh = tiny_lora(["trainer.lr=1e-2", f"trainer.zero_stage={zero_stage}"])
    restored_engine = build_policy(fresh, cfg.trainer, "float32")
    _, client = restored_engine.load_checkpoint(str(tmp_path), tag=CKPT_TAG, load_module_strict=False)
    assert client["step"] == 2
    for engine in (policy_engine, restored_engine):  # the same next step from the same Adam state
        engine.backward(engine(input_ids=ids, labels=ids).loss)
        engine.step()
    resumed, continued = gather_state_dict(restored_engine), gather_state_dict(policy_engine)
    assert resumed.keys() == continued.keys()
    assert all(torch.equal(resumed[k], continued[k]) for k in continued)
    sent = generator_weights(policy_engine)
    assert set(sent) == {base_name(k) for k in base if ".base_layer." in k}  # the adapted layers alone


@pytest.mark.integration
def test_a_lora_run_checkpoints_adapters_and_resumes_to_the_same_metrics(tmp_path, ray_local):
    """Through `fit` (Ray Train, DeepSpeed, the generators): a LoRA run stopped after step 2 and continued to
    step 3 logs the same metrics as one run of 3 steps, and its checkpoint is the adapters with `lora.json`."""
    from mlflow.tracking import MlflowClient

    from gcpo.training.fit import fit

    overrides = LORA + [
        "rollout.backend=transformers", "rollout.prompts_per_step=2", "rollout.group_size=2",
        "rollout.max_new_tokens=6", "task.train_size=12", "task.eval_size=2", "trainer.eval_every=0",
        "trainer.checkpoint_every=1", "trainer.lr=1e-2", "tracking.log_rollouts_every=0",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]
    run = lambda name, steps: fit(load_config(preset="gcpo", overrides=overrides + [f"trainer.steps={steps}"]),  # noqa: E731
                                  run_name=name, base=tmp_path)
    whole = run("whole", 3)
    run("split", 2)
    split = run("split", 3)
    assert split.metrics["step"] == 3 and split.mlflow_run_id
    client = MlflowClient(tracking_uri=whole.tracking_uri)
    for key in ["reward/mean", "loss/policy", "grad/norm", "policy/entropy", "sync/logprob_abs_diff"]:
        a = sorted((m.step, m.value) for m in client.get_metric_history(whole.mlflow_run_id, key))
        b = sorted((m.step, m.value) for m in client.get_metric_history(split.mlflow_run_id, key))
        assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3], key
        assert [v for _, v in a] == pytest.approx([v for _, v in b], rel=1e-3, abs=1e-5), key
        if key == "sync/logprob_abs_diff":  # the peft trainer (shared prompt) and the merged generator agree
            assert all(v < 1e-4 for _, v in a + b), (a, b)
    [checkpoint] = [c for c in split.run_dir.glob("checkpoint_*") if c.is_dir()]
    assert (checkpoint / "lora.json").exists()
    model_bytes = (tiny_dir() / "model.safetensors").stat().st_size
    assert sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file()) < 0.5 * model_bytes
