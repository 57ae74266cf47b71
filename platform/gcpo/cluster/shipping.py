"""Folders shipped to another node through Ray's object store: the model a generator on another host loads.

A generator placed on the trainer's node opens the trainer's model folder as it is. One placed on another node
first compares that path's contents there with the trainer's (`folder_fingerprint`: the project's one folder hash,
`gcpo.content_hash`: every non-hidden file's relative name and bytes); when they match (shared storage, or the
same model made there), it is used in place. Otherwise the trainer packs the folder once (`pack_folder`, one
object in Ray's object store) and the generator unpacks it into its node's own temp folder (`unpack_folder`,
under `<tmp>/gcpo-models/<fingerprint>`; written to a temp name and renamed, so a half-written copy is never
used; a copy already there is reused).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from gcpo.content_hash import folder_content_hash, folder_files


def folder_fingerprint(folder: str | Path) -> str | None:
    """The content hash of `folder` (`gcpo.content_hash`; hidden files left out, as `pack_folder` leaves them);
    None when it is no folder."""
    folder = Path(folder)
    return folder_content_hash(folder) if folder.is_dir() else None


def pack_folder(folder: str | Path) -> dict[str, bytes]:
    """Every non-hidden file under `folder` by relative name (what `unpack_folder` writes back)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder_files(folder)}


def unpack_folder(files: dict[str, bytes], fingerprint: str, root: str | Path | None = None) -> Path:
    """`files` written under `root` (default: this node's temp folder)/gcpo-models/<fingerprint>; returns it."""
    base = Path(root or tempfile.gettempdir()) / "gcpo-models"
    target = base / fingerprint[:32]
    if target.is_dir():
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{target.name}-"))
    try:
        for name, data in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            os.rename(tmp, target)
        except OSError:  # another generator of this node finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
