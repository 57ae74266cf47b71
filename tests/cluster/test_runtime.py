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
