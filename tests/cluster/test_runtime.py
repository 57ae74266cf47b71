import os
import time

import pytest

from gcpo.cluster.runtime import ClusterError, _stale_cluster_file, init_ray


def test_unreachable_address_fails_fast_and_names_it():
    start = time.time()
    with pytest.raises(ClusterError, match=r"'127\.0\.0\.1:9' is unreachable"):
        init_ray("127.0.0.1:9", timeout_s=3)
    assert time.time() - start < 10


def test_stale_cluster_file_is_detected(tmp_path, monkeypatch, free_port):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    record = tmp_path / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    record.write_text(f"127.0.0.1:{free_port}")  # nothing listens there: a head killed without `ray stop`
    assert _stale_cluster_file() == record


def test_placement_resources_pin_trainers_and_generators_to_their_groups():
    from gcpo.config import load_config
    from gcpo.rollout.vllm_pool import generator_resources
    from gcpo.training.fit import worker_resources

    plain = load_config()
    assert worker_resources(plain.trainer) == {"CPU": 1.0} and generator_resources(0.0, "") == {}
    pinned = load_config(overrides=["trainer.device=cuda", "trainer.placement_resource=trainer_gpu",
                                    "rollout.placement_resource=generator_gpu", "rollout.gpus_per_generator=2"])
    assert worker_resources(pinned.trainer) == {"CPU": 1.0, "GPU": 1, "trainer_gpu": 1}
    assert generator_resources(pinned.rollout.gpus_per_generator, pinned.rollout.placement_resource) == \
        {"generator_gpu": 2.0}
    assert generator_resources(0.0, "generator_cpu") == {"generator_cpu": 1.0}  # CPU generators: one unit each


def test_a_token_at_hand_turns_token_authentication_on_and_none_is_said(tmp_path, monkeypatch):
    """Joining a cluster uses the token `gcpo cluster up` wrote (`~/.ray/auth_token`), as `gcpo submit` does;
    without one, a failed join says where to put it."""
    from gcpo.cluster import runtime

    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    # the environment alone: Ray's process-wide config is left as it was (monkeypatch restores the environment at
    # the end, and a config re-read here would then disagree with it for the suite's later local runtimes)
    monkeypatch.setattr(runtime, "_reload_ray_config", lambda: None)
    monkeypatch.setitem(runtime._TOKEN_MODE, "ours", False)
    assert not runtime.use_token_if_available() and "RAY_AUTH_MODE" not in os.environ
    error = str(runtime._join_error("127.0.0.1:26379", ConnectionError("Failed to connect"), token=False))
    assert "Failed to connect" in error and "~/.ray/auth_token" in error and "RAY_AUTH_TOKEN" in error
    assert "auth_token" not in str(runtime._join_error("127.0.0.1:26379", ConnectionError("x"), token=True))
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t" * 32)
    assert runtime.use_token_if_available() and os.environ["RAY_AUTH_MODE"] == "token"
    # a local runtime started later by the same process is a plain one again (it calls forget_token_mode): the
    # suite's later tests start local runtimes in this process and in children that inherit its environment
    runtime.forget_token_mode()
    assert "RAY_AUTH_MODE" not in os.environ
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the user's own choice is never undone
    runtime.forget_token_mode()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.delenv("RAY_AUTH_MODE")
