"""Shared fixtures for the task tests: one verifier pool per session (its workers take ~2 s to start)."""

import pytest

from gcpo.tasks.pool import VerifierPool


@pytest.fixture(scope="session")
def pool():
    with VerifierPool(workers=2, timeout_s=20.0) as p:
        yield p
