"""gcpo.network: addresses, the TCP probe, loopback, free ports."""

import socket

import pytest

from gcpo.network import free_port, host_port, is_loopback, reachable


def test_host_port_and_loopback():
    assert host_port("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert host_port("ray://head:10001") == ("head", 10001)
    assert host_port("http://127.0.0.1:28265/api/jobs/") == ("127.0.0.1", 28265)
    assert host_port("http://[::1]:8265") == ("::1", 8265)
    with pytest.raises(ValueError):
        host_port("http://head")
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("head.example")


def test_a_free_port_is_free_and_the_probe_sees_a_listener():
    port = free_port()
    assert not reachable(f"127.0.0.1:{port}", timeout_s=0.5)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert reachable(f"http://127.0.0.1:{port}/api", timeout_s=0.5)
    assert not reachable("no-port-here", timeout_s=0.5)


def test_one_default_for_a_local_rays_cpus():
    import os

    from gcpo.cluster.runtime import local_num_cpus

    assert local_num_cpus() == max(4, os.cpu_count() or 1)
