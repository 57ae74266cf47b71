"""Checkpoints: a save that fails on a full disk says so (torch's own message names a zip offset, not the disk)."""

from gcpo.training.checkpoint import disk_full_error

TORCH_MESSAGE = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 14016 vs 13910")


def test_a_save_failure_on_a_full_disk_names_the_folder_and_the_space():
    error = disk_full_error(TORCH_MESSAGE, "/tmp/ckpt", 4, needed=76 * 2**20, free=14 * 2**20)
    assert isinstance(error, OSError)
    message = str(error)
    assert "checkpoint of step 4" in message and "/tmp/ckpt" in message
    assert "14 MiB free" in message and "about 76 MiB" in message and "unexpected pos 14016" in message
    assert "TMPDIR" in message and "trainer.keep_checkpoints" in message


def test_a_save_failure_with_room_on_disk_is_not_blamed_on_the_disk():
    assert disk_full_error(TORCH_MESSAGE, "/tmp/ckpt", 4, needed=76 * 2**20, free=10 * 2**30) is None
