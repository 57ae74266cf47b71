"""The run folder: where a training run keeps its config and checkpoints, and how a run is found by its name.

Layout: `<trainer.output_dir>/<run name>/` holds `gcpo_config.yaml` (the resolved config the run started with)
beside Ray Train's checkpoint folders and its snapshot of the committed ones (`gcpo.training.checkpoint`). A sweep
keeps its state and its trials' runs under `<trainer.output_dir>/sweeps/<sweep name>/`. `trainer.output_dir`
defaults to `runs` in the project folder.

Finding a run by name (`gcpo train --resume NAME`, `gcpo export NAME`): a path to a run folder is taken as it is;
a name is looked for in the project's `runs/`, then where this machine last wrote a run of that name under any
`trainer.output_dir` (each run records its folder in the cache when it starts: `<cache>/run_folders/<name>`, one
small file per name, so concurrent sweep trials never write the same file).
"""

from __future__ import annotations

from pathlib import Path

from gcpo.config import RunConfig, dump_yaml
from gcpo.models import cache_dir

RUN_CONFIG = "gcpo_config.yaml"
RUNS = "runs"  # `trainer.output_dir`'s default, in the project folder
SWEEPS = "sweeps"  # a sweep's folder under `trainer.output_dir`


def is_run_folder(path: Path) -> bool:
    return (path / RUN_CONFIG).exists()


def _record_file(name: str) -> Path | None:
    """Where the folder of the run `name` is recorded (None for a name that is no plain file name)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        return None
    return cache_dir() / "run_folders" / name


def create_run_folder(cfg: RunConfig, name: str) -> Path:
    """`<trainer.output_dir>/<name>/` with the run's config in it (kept when it exists: a resumed run), recorded
    as the latest run of that name."""
    folder = Path(cfg.trainer.output_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_CONFIG).write_text(dump_yaml(cfg))
    record = _record_file(name)
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(str(folder.resolve()) + "\n")
    return folder


def find_run_folder(target: str | Path, base: Path) -> tuple[Path | None, list[Path]]:
    """The run folder `target` names (a path, or a run name: see the module docstring) and the places looked at,
    in order (the folder is None when none holds a run)."""
    path = Path(target).expanduser()
    looked = [path, base / RUNS / str(target)]
    record = _record_file(str(target))
    if record is not None and record.exists():
        looked.append(Path(record.read_text().strip()))
    return next((p for p in looked if is_run_folder(p)), None), looked


def sweep_folder(output_dir: str, name: str, base: Path) -> Path:
    """`<trainer.output_dir>/sweeps/<name>/` (a relative `output_dir` is read from `base`)."""
    return (base / output_dir / SWEEPS / name).resolve()
