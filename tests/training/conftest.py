import os

import pytest


@pytest.fixture(scope="session")
def single_process_group():
    """A one-rank gloo process group, as a DeepSpeed engine built outside Ray Train needs (one per session:
    DeepSpeed keeps a handle to the first group it sees)."""
    import torch.distributed as dist

    port = 29000 + os.getpid() % 1000
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
