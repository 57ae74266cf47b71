"""A study's pieces and its folder's layout (`gcpo study run --out OUT`): the pieces in their balanced order (one
arm of one claim at one seed each), the claims' search spaces under `OUT/spaces/`, one folder per piece under
`OUT/pieces/<claim>/<arm>_s<seed>/`, done once its report's `runs.csv` is there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gcpo.studies.study_file import Claim, Study, folder_name, look_seeds, write_space


def space_file(out: Path, claim: Claim) -> Path:
    """The claim's search space under OUT/spaces/ (rewritten each time: the study file may have changed)."""
    return write_space(claim.space, out / "spaces" / f"{claim.name}.yaml")


def piece_dir(out: Path, piece: dict) -> Path:
    return out / "pieces" / piece["claim"] / piece["name"]


def is_done(out: Path, piece: dict) -> bool:
    return (piece_dir(out, piece) / "runs.csv").exists()


def pieces(study: Study, look: int = 0) -> list[dict[str, Any]]:
    """Every piece of the study up to `look` (0: the planned seeds), seed by seed across the claims' arms."""
    seeds = {name: look_seeds(claim, study)[look] for name, claim in study.claims.items()}
    out = []
    for rank in range(max(len(s) for s in seeds.values())):
        for name, claim in study.claims.items():
            if rank >= len(seeds[name]):
                continue
            seed = seeds[name][rank]
            out += [{"claim": name, "arm": arm, "seed": seed, "name": f"{folder_name(arm)}_s{seed}",
                     "only": {key: [value] for key, value in claim.points[arm].items()}} for arm in claim.arms]
    return out
