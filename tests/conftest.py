"""Test layout: tests mirror the package (`tests/algorithms` <-> `gcpo.algorithms`, ...).

Fast pure tests are unmarked; tests that start real components (processes, Ray, vLLM, DeepSpeed, MLflow) are
marked `integration`. Run only the fast ones with `-m "not integration"`.
"""

import socket

import pytest


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
