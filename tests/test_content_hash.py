"""The one folder hash (`gcpo.content_hash`): what the step-0 evaluation cache, the model shipping and the
placement check each call "the same model" is the same hash of the same files."""

import hashlib

from gcpo.cluster.placement import path_view
from gcpo.cluster.shipping import folder_fingerprint, pack_folder
from gcpo.content_hash import folder_content_hash, folder_files
from gcpo.eval_cache import model_content_hash


def make_model(root):
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text('{"a": 1}')
    (root / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (root / ".hidden").write_text("marker")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    return root


def test_the_hash_is_of_names_and_contents_by_hand(tmp_path):
    model = make_model(tmp_path / "m")
    expected = hashlib.sha256()
    for name in ("config.json", "sub/weights.bin"):  # sorted, hidden files and folders left out
        expected.update(f"{name}\0{hashlib.sha256((model / name).read_bytes()).hexdigest()}\n".encode())
    assert folder_content_hash(model) == expected.hexdigest()
    assert [p.relative_to(model).as_posix() for p in folder_files(model)] == ["config.json", "sub/weights.bin"]
    assert set(pack_folder(model)) == {"config.json", "sub/weights.bin"}  # what is shipped is what is hashed


def test_cache_shipping_and_placement_agree_on_one_model(tmp_path, monkeypatch):
    monkeypatch.setenv("GCPO_CACHE", str(tmp_path / "cache"))
    model = make_model(tmp_path / "m")
    first = folder_content_hash(model)
    [view] = path_view([("model.name", str(model), "model")])
    assert model_content_hash(model, tmp_path / "memo.json") == folder_fingerprint(model) == view == first
    (model / ".hidden").write_text("another marker")  # hidden files are no part of the model
    assert folder_fingerprint(model) == first
    weights = model / "sub" / "weights.bin"
    weights.write_bytes(bytes(reversed(range(256))) * 64)  # same size, other bytes: another model for all three
    [view] = path_view([("model.name", str(model), "model")])
    assert len({model_content_hash(model, tmp_path / "memo.json"), folder_fingerprint(model), view}) == 1
    assert view != first
    assert path_view([("model.name", str(tmp_path / "absent"), "model")]) == [None]
