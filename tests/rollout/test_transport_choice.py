"""`rollout.weight_transport` resolved from where the generators were placed (Ray node ids): `auto` picks `file`
on the trainer's node and `collective` elsewhere; an explicit `file` across nodes is refused naming the key."""

import pytest

from gcpo.config import ConfigError
from gcpo.rollout.weight_sync import build_transport, choose_transport

TRAINER, OTHER = "a" * 56, "b" * 56


def test_auto_picks_file_on_the_trainers_node_and_collective_elsewhere():
    assert choose_transport("auto", TRAINER, [TRAINER, TRAINER]) == "file"
    assert choose_transport("auto", TRAINER, [TRAINER, OTHER]) == "collective"
    assert choose_transport("collective", TRAINER, [TRAINER]) == "collective"  # explicit: kept
    assert choose_transport("file", TRAINER, [TRAINER]) == "file"


def test_explicit_file_across_nodes_is_refused_naming_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"rollout\.weight_transport: 'file'.*1 of 2 generator\(s\).*bbbbbbbbbbbb"
                                          r".*rollout\.weight_transport=collective"):
        choose_transport("file", TRAINER, [TRAINER, OTHER])
    with pytest.raises(ConfigError, match=r"unknown transport 'shm'"):
        choose_transport("shm", TRAINER, [TRAINER])


def test_auto_must_be_resolved_before_a_transport_is_built():
    with pytest.raises(ValueError, match="choose_transport"):
        build_transport("auto", lambda: [], backend="gloo")
