"""Whether two folders hold the same thing: the one content hash of a folder, used wherever that is asked.

`folder_content_hash(folder, memo_file=None)` is a SHA-256 over every file under `folder` in sorted order: its
path relative to `folder` and the SHA-256 of its bytes. Hidden files and folders (a name starting with a dot: VCS
metadata, editor files, the placement check's marker) are left out, by every user alike, so what is hashed is
what is shipped. With `memo_file` each file's hash is remembered there by (absolute path, size, mtime in ns) and
read back while those hold, so a second call reads no weights; a changed file (new size or mtime) is read again.
The memo is one small JSON file written atomically (concurrent writers lose entries, never correctness).

Its users: the key of the reused step-0 evaluation (`gcpo.eval_cache.model_content_hash`), the model a
generator on another node uses in place or receives (`gcpo.cluster.shipping.folder_fingerprint`), and the
start-up check that every node sees a model folder alike (`gcpo.cluster.placement.path_view`). No torch, no Ray.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CHUNK = 1 << 22


def folder_files(folder: str | Path) -> list[Path]:
    """Every non-hidden file under `folder`, sorted (none in a hidden folder)."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_content_hash(folder: str | Path, memo_file: Path | None = None) -> str:
    """The content hash of `folder` (module docstring), each file's hash memoised in `memo_file` when given."""
    root = Path(folder).resolve()
    memo = read_json(memo_file) if memo_file is not None else None
    memo = memo if isinstance(memo, dict) else {}
    digest, changed = hashlib.sha256(), False
    for path in folder_files(root):
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        known = memo.get(str(path))
        if not (isinstance(known, list) and known[:2] == stamp):
            known, changed = [*stamp, file_hash(path)], True
            memo[str(path)] = known
        digest.update(f"{path.relative_to(root).as_posix()}\0{known[2]}\n".encode())
    if changed and memo_file is not None:
        write_json_atomic(memo_file, memo)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, value: Any) -> None:
    """Write `value` as JSON to a temp file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
