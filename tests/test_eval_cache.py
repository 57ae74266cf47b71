"""The step-0 evaluation cache: its key (pure), the model's content hash, and the store's round trip."""

import os
from pathlib import Path

from gcpo.eval_cache import (
    EvalCache,
    held_out_items,
    model_content_hash,
    result_from_record,
    result_to_record,
    step0_key,
)
from gcpo.eval_items import ItemResult
from gcpo.evaluation import EvalResult, TaskEval
from gcpo.tasks.types import Task, TaskItem

SETTINGS = {"eval_size": 2, "eval_k": 4, "max_new_tokens": 64, "stop": ["</answer>"], "seed": 0,
            "generator_dtype": "float32"}
ENV = {"torch": "2.9.0", "vllm": "0.32.0", "cpu": "some cpu"}


def task(n: int = 3, answer: str = "4") -> Task:
    items = [TaskItem(f"t/{i}", f"{i} + 2?", answer if i == 0 else str(i + 2), None, "numeric", {"level": i})
             for i in range(n)]
    return Task("basic_arithmetic", "held_out", items, "numeric")


def key(**changes) -> str:
    inputs = {"model_hash": "m" * 64, "items": held_out_items([task()], 2), "settings": SETTINGS,
              "environment": ENV} | changes
    return step0_key(**inputs)


def test_the_key_is_a_function_of_its_inputs_alone():
    assert key() == key()
    assert key(settings=dict(reversed(list(SETTINGS.items())))) == key()  # order of the settings is irrelevant
    assert len(key()) == 64


def test_every_input_changes_the_key():
    base = key()
    assert key(model_hash="n" * 64) != base
    assert key(settings=SETTINGS | {"eval_size": 3}) != base
    assert key(settings=SETTINGS | {"eval_k": 1}) != base
    assert key(settings=SETTINGS | {"seed": 1}) != base
    assert key(settings=SETTINGS | {"generator_dtype": "bfloat16"}) != base
    assert key(settings=SETTINGS | {"stop": []}) != base
    assert key(environment=ENV | {"vllm": "0.33.0"}) != base
    assert key(items=held_out_items([task()], 3)) != base  # one more item
    assert key(items=held_out_items([task(answer="5")], 2)) != base  # an item's answer changed


def test_held_out_items_keep_the_first_eval_size_items_in_order():
    (entry,) = held_out_items([task(5)], 2)
    assert entry["task"] == "basic_arithmetic" and entry["verifier"] == "numeric"
    assert [row[0] for row in entry["items"]] == ["t/0", "t/1"]
    assert held_out_items([task(2)], 50)[0]["items"] == held_out_items([task(2)], 2)[0]["items"]


def eval_result() -> EvalResult:
    items = (ItemResult("basic_arithmetic", 0, "t/0", 1.0, 0.75, 1.0),
             ItemResult("basic_arithmetic", 1, "t/1", 0.0, 1 / 3, 0.0))
    return EvalResult([TaskEval("basic_arithmetic", 2, 4, 0.5, (0.75 + 1 / 3) / 2, 0.5, 17.5, 0, 3.25, items)])


def test_a_result_round_trips_exactly_through_its_record():
    result = eval_result()
    back = result_from_record(result_to_record(result))
    assert back == result
    assert back.metrics() == result.metrics() and back.items_json() == result.items_json()


def test_the_store_gives_back_what_it_stored_and_misses_otherwise(tmp_path):
    cache = EvalCache(tmp_path / "eval")
    assert cache.load(key()) is None
    path = cache.store(key(), eval_result(), {"settings": SETTINGS})
    assert path == tmp_path / "eval" / "step0" / f"{key()}.json"
    loaded = cache.load(key())
    assert loaded == eval_result() and loaded.items_json() == eval_result().items_json()
    assert cache.load(key(model_hash="n" * 64)) is None
    path.write_text("{not json")  # a damaged entry is a miss, never an error
    assert cache.load(key()) is None


def write_model(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "model.safetensors").write_bytes(b"\x00" * 1000)
    (folder / "tokenizer.json").write_text("{}")


def test_the_model_hash_follows_the_content(tmp_path):
    write_model(tmp_path / "a")
    write_model(tmp_path / "b")
    memo = tmp_path / "cache" / "file_hashes.json"
    first = model_content_hash(tmp_path / "a", memo)
    assert model_content_hash(tmp_path / "b", memo) == first  # same content elsewhere: the same model
    (tmp_path / "b" / "model.safetensors").write_bytes(b"\x00" * 999 + b"\x01")  # one weight changed
    assert model_content_hash(tmp_path / "b", memo) != first
    (tmp_path / "b" / "tokenizer.json").write_text("{} ")
    assert model_content_hash(tmp_path / "b") != model_content_hash(tmp_path / "a")
    (tmp_path / "a" / ".lock").write_text("x")  # hidden files are not the model
    assert model_content_hash(tmp_path / "a", memo) == first


def test_the_second_call_reads_the_remembered_hashes(tmp_path):
    """A file whose size and mtime are unchanged is not read again (its remembered hash is used): shown by changing
    its bytes behind the memo's back, keeping size and mtime."""
    write_model(tmp_path / "m")
    memo = tmp_path / "file_hashes.json"
    first = model_content_hash(tmp_path / "m", memo)
    weights = tmp_path / "m" / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"\x01" * 1000)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model_content_hash(tmp_path / "m", memo) == first  # from the memo
    assert model_content_hash(tmp_path / "m") != first  # without it, the file is read
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a new mtime: read again
    assert model_content_hash(tmp_path / "m", memo) != first


def test_cpu_flags_answer_for_each_name_asked():
    from gcpo.eval_cache import ISA_FLAGS, cpu_flags

    flags = cpu_flags()
    assert list(flags) == list(ISA_FLAGS) and all(isinstance(v, bool) for v in flags.values())
