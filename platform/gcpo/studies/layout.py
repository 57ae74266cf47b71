"""A study folder's layout (`gcpo study run --out OUT`): the claims' search spaces under `OUT/spaces/`, one folder
per piece under `OUT/pieces/<claim>/<arm>_s<seed>/`, done once its report's `runs.csv` is there."""

from __future__ import annotations

from pathlib import Path

from gcpo.studies.study_file import Claim, write_space

def space_file(out: Path, claim: Claim) -> Path:
    """The claim's search space under OUT/spaces/ (rewritten each time: the study file may have changed)."""
    return write_space(claim.space, out / "spaces" / f"{claim.name}.yaml")


def piece_dir(out: Path, piece: dict) -> Path:
    return out / "pieces" / piece["claim"] / piece["name"]


def is_done(out: Path, piece: dict) -> bool:
    return (piece_dir(out, piece) / "runs.csv").exists()
