"""The generator actor's environment (pure): in-process engine, OpenMP bound to the chosen cores."""

import pytest

from gcpo.rollout.vllm_pool import in_process_engine_env


def test_default_binds_every_core_and_overrides_rays_thread_count():
    env = in_process_engine_env(None, 4)
    assert env == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "0-3",
                   "OMP_NUM_THREADS": "4", "OMP_PLACES": "{0,1,2,3}", "OMP_PROC_BIND": "true"}


def test_user_binding_is_kept_and_counted():
    env = in_process_engine_env("2-3,6", 8)
    assert (env["VLLM_CPU_OMP_THREADS_BIND"], env["OMP_NUM_THREADS"], env["OMP_PLACES"]) == ("2-3,6", "3", "{2,3,6}")


def test_malformed_binding_names_the_variable():
    with pytest.raises(ValueError, match="VLLM_CPU_OMP_THREADS_BIND='auto'"):
        in_process_engine_env("auto", 2)


def test_nobind_leaves_threads_alone():
    assert in_process_engine_env("nobind", 4) == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                                                  "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
