"""The DeepSpeed policy engine on the tiny model: what building it starts (and what it must not)."""

import sys

import pytest

from gcpo.config import load_config
from gcpo.models import tiny_dir
from gcpo.training.deepspeed_policy import build_policy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_process_group")]


def test_building_the_policy_compiles_no_inference_shm_op():
    """DeepSpeed's CPU comm backend would JIT-compile `deepspeed_shm_comm` (for inference all-reduce only)."""
    import deepspeed.comm.comm as ds_comm
    from transformers import AutoModelForCausalLM

    cfg = load_config(preset="grpo", overrides=["model.name=tiny"])
    engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")
    assert engine.module is not None
    assert ds_comm.cdb is not None and ds_comm.cdb.shm_comm_op is None
    assert not [m for m in sys.modules if "deepspeed_shm_comm" in m]


@pytest.mark.parametrize("zero_stage", [0, 3])
def test_checkpoint_size_estimate_counts_the_full_model_at_every_zero_stage(zero_stage):
    """Under ZeRO-3 a rank's parameters are partitions whose `numel()` is near zero; the disk-full check must still
    estimate the whole checkpoint (weights and Adam's two moments of the full model)."""
    from transformers import AutoModelForCausalLM

    from gcpo.training.checkpoint import checkpoint_bytes

    model = AutoModelForCausalLM.from_pretrained(tiny_dir())
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    cfg = load_config(preset="grpo", overrides=["model.name=tiny", f"trainer.zero_stage={zero_stage}"])
    policy_engine = build_policy(model, cfg.trainer, "float32")
    if zero_stage == 3:  # the partitioned parameters really are (near) empty on this rank
        assert sum(p.numel() for p in policy_engine.module.parameters()) * 4 < full / 100
    assert checkpoint_bytes(policy_engine) == 3 * full
