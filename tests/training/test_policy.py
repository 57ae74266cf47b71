"""The DeepSpeed policy engine on the tiny model: what building it starts (and what it must not)."""

import sys

import pytest

from gcpo.config import load_config
from gcpo.models import tiny_dir
from gcpo.training.policy import build_policy

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
