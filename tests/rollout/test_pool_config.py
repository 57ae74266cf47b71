"""The vLLM pool's settings come from `RolloutConfig` alone, and an unknown weight transport is refused (never
replaced by `file`). Pure: nothing here starts Ray or vLLM."""

import dataclasses
import inspect
import typing

import pytest

from gcpo.config import ConfigError, RolloutConfig, WeightTransport, load_config
from gcpo.rollout.vllm_pool import VLLMPool
from gcpo.rollout.weight_sync import SharedFileTransport, build_transport, check_transport

REFUSED = r"rollout\.weight_transport: unknown transport 'nccl'; allowed: 'auto', 'file', 'collective'"


def test_unknown_transport_is_refused_naming_the_key_and_the_allowed_values():
    with pytest.raises(ConfigError, match=REFUSED):
        build_transport("nccl", lambda: [], backend="gloo")
    with pytest.raises(ConfigError, match=REFUSED):  # before any engine starts (the model folder is not read)
        VLLMPool(RolloutConfig(weight_transport="nccl"), "/nonexistent-model")
    with pytest.raises(ConfigError, match=r"rollout\.weight_transport: invalid value 'nccl'"):
        load_config(overrides=["rollout.weight_transport=nccl"])


def test_every_configurable_transport_is_accepted():
    assert typing.get_args(WeightTransport) == ("auto", "file", "collective")
    for kind in typing.get_args(WeightTransport):
        check_transport(kind)
    assert load_config().rollout.weight_transport == "auto"
    assert isinstance(build_transport("file", lambda: [], backend="gloo"), SharedFileTransport)


def test_the_pool_restates_no_rollout_setting():
    params = set(inspect.signature(VLLMPool.__init__).parameters)
    assert params == {"self", "cfg", "model_dir", "model_dtype", "max_model_len", "max_restarts"}
    assert not params & {f.name for f in dataclasses.fields(RolloutConfig)}
