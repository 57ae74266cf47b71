"""Checkpoints: a save that fails on a full disk says so (torch's own message names a zip offset, not the disk)."""

from gcpo.training.checkpoint import disk_full_error, remove_uncommitted

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


def test_resume_removes_only_the_checkpoint_folders_newer_than_the_restored_one(tmp_path):
    names = ["checkpoint_2026-12-01_00-02-10.000001", "checkpoint_2026-12-01_00-02-20.000002",
             "checkpoint_2026-12-01_00-02-30.000003", "checkpoint_2026-12-01_00-02-31.000004"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "gcpo_step.txt").write_text("2")
    (tmp_path / "checkpoint_manager_snapshot.json").write_text("{}")
    removed = remove_uncommitted(tmp_path / names[1])
    assert removed == tuple(names[2:])  # the killed attempt's half-written ones
    assert sorted(p.name for p in tmp_path.iterdir()) == [*names[:2], "checkpoint_manager_snapshot.json"]
    assert remove_uncommitted(tmp_path / "gone") == ()  # remote storage or no folder: nothing touched
