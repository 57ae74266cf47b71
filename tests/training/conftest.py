import pytest


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray runtime (logical CPUs oversubscribed: a 2-core machine runs a trainer and a generator)."""
    import ray

    from gcpo.cluster.runtime import init_ray

    init_ray(None, num_cpus=4)
    yield
    ray.shutdown()
