"""A model folder shipped to another node: fingerprint, pack and unpack (pure file operations, no Ray)."""

from gcpo.cluster.shipping import folder_fingerprint, pack_folder, unpack_folder


def test_a_packed_folder_unpacks_to_the_same_fingerprint_once(tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 100)
    fp = folder_fingerprint(src)
    copy = unpack_folder(pack_folder(src), fp, root=tmp_path / "node")
    assert copy != src and folder_fingerprint(copy) == fp
    assert unpack_folder({}, fp, root=tmp_path / "node") == copy  # already there: reused, not rewritten
    assert [p.name for p in (tmp_path / "node" / "gcpo-models").iterdir()] == [copy.name]  # no temp left


def test_fingerprint_sees_contents_and_names_and_missing_folders(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("x")
    before = folder_fingerprint(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("y")
    assert folder_fingerprint(tmp_path / "m") != before
    (tmp_path / "m" / "config.json").rename(tmp_path / "m" / "other.json")
    assert folder_fingerprint(tmp_path / "m") not in (before, None)
    assert folder_fingerprint(tmp_path / "absent") is None
