"""Network helpers every part may use: parse an address, probe it, tell loopback, pick a free port.

It imports no `gcpo` module, so the cluster code (`gcpo.cluster`), the MLflow logger's outage probe
(`gcpo.tracking`), the weight-sync group (`gcpo.rollout.weight_sync`) and the one-rank process group
(`gcpo.training.distributed`) share one copy of each without reaching into each other.
"""

from __future__ import annotations

import ipaddress
import socket


def host_port(address: str) -> tuple[str, int]:
    """`host:port`, `ray://host:port` or `http(s)://host:port[/path]` -> (host, port); ValueError if no port."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def reachable(address: str, timeout_s: float = 2.0) -> bool:
    """Whether a TCP connection to `address` (any form `host_port` takes) opens within `timeout_s`."""
    try:
        with socket.create_connection(host_port(address), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine's loopback interface only (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on now (the OS's pick; free when this returns)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
