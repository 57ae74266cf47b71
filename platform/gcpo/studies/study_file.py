"""Study files (`studies/*.yaml`): named claims, each a comparison of arms at one regime, seeds and budget.

Format (every key optional except `claims`):

    name: paper_claims                  # default: the file's stem
    description: ...
    base_config: ../configs/study.yaml  # the regime: a run-config YAML relative to this file (as a search space's)
    base: {trainer.lr: 1.0e-5}          # run-config values every arm of every claim shares
    steps: 4                            # trainer.steps of every trial
    eval_every: 2                       # trainer.eval_every (and trainer.checkpoint_every unless `base` sets it)
    eval_size: 100                      # task.eval_size: the held-out items every seed is evaluated on
    metric: eval/basic_arithmetic/pass_at_1   # per item, so the intervals are over seeds and items
    mode: max
    seeds: [0, 1, 2]                    # the planned seeds (every arm of a claim runs once per seed)
    target_difference: 0.05             # the smallest difference worth finding (claims may set their own)
    budget_hours: 12                    # the wall-clock budget `run --until-decided` stops at
    until_decided: {looks: 4, seeds_per_round: 1}   # at most `looks` looks; each round adds seeds_per_round
    claims:
      methods:                          # a claim: named arms against a reference arm
        description: ...
        reference: grpo                 # default: the first arm
        arms:
          grpo: {preset: grpo}
          gcpo_no_golden: {preset: gcpo, algorithm.golden_answers: false}
      ablation:                         # a factorial claim: every combination of the factors' two levels
        base: {preset: gcpo}            # run-config values this claim's arms share
        factors:
          algorithm.golden_answers: [true, false]
          algorithm.kl_coef: [0.0, 0.04]
        seeds: [0]                      # a claim may set seeds, target_difference, metric

A claim compiles to a search space (`claim_space`: `base_config`, the shared and the claim's `base`, its arms or
its factors' grid) so `gcpo.sweeps.space.load_space` validates every arm against the run config and
`gcpo.sweeps.runner.run_sweep` runs it. `load_study` raises `StudyError` naming the file, the claim and the key
(unknown keys with the nearest valid one, a reference that is no arm, a factor without exactly two levels).
"""

from __future__ import annotations

import itertools
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gcpo.errors import suggest
from gcpo.sweeps.space import SpaceError, load_space

TOP_KEYS = ("name", "description", "base_config", "base", "steps", "eval_every", "eval_size", "metric", "mode",
            "seeds", "target_difference", "budget_hours", "until_decided", "claims")
CLAIM_KEYS = ("description", "arms", "factors", "reference", "base", "seeds", "target_difference", "metric")
UNTIL_DECIDED_KEYS = ("looks", "seeds_per_round")
DEFAULT_METRIC = "eval/basic_arithmetic/pass_at_1"
DEFAULT_TARGET = 0.05
RESERVED = ("pieces", "spaces")  # folders of a study's output beside one folder per claim


class StudyError(ValueError):
    """A study file is malformed; the message names the file, the claim and the key."""


@dataclass
class Claim:
    name: str
    arms: list[str]  # arm labels, in run order (the reference first)
    points: dict[str, dict[str, Any]]  # arm label -> the grid values that narrow the claim's space to it
    reference: str
    seeds: list[int]
    metric: str
    target_difference: float
    space: dict[str, Any]  # the search-space mapping (`claim_space`)
    factors: dict[str, list] = field(default_factory=dict)  # factorial claims: dotted key -> its two levels
    description: str = ""

    @property
    def factorial(self) -> bool:
        return bool(self.factors)

    @property
    def comparisons(self) -> int:
        """How many differences the claim reports: each arm against the reference, or each factorial effect."""
        return 2 ** len(self.factors) - 1 if self.factorial else len(self.arms) - 1


@dataclass
class Study:
    name: str
    path: Path
    claims: dict[str, Claim]
    seeds: list[int]
    mode: str = "max"
    budget_hours: float | None = None
    looks: int = 1
    seeds_per_round: int = 1
    description: str = ""

    @property
    def comparisons(self) -> int:
        return sum(c.comparisons for c in self.claims.values())


def arm_name(point: dict[str, Any]) -> str:
    """A factorial arm's label: `golden_answers=True, kl_coef=0` (what `gcpo compare` calls that grid point)."""
    from gcpo.sweeps.runner import arm_label

    return arm_label(point, list(point))


def folder_name(arm: str) -> str:
    """An arm label as a file name (`golden_answers=True_kl_coef=0`)."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", arm.replace(", ", "_"))


def _checker(path: Path, lines: dict):
    def fail(keys: tuple[str, ...], message: str) -> StudyError:
        line = lines.get(keys)
        where = f"{path}:{line}" if line else str(path)
        claim = f" claim {keys[1]!r}:" if len(keys) > 1 and keys[0] == "claims" else ""
        return StudyError(f"{where}:{claim} {'.'.join(keys) or 'file'}: {message}")
    return fail


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    lines: dict[tuple[str, ...], int] = {}

    def walk(node, keys: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[keys + (str(key.value),)] = key.start_mark.line + 1
                walk(value, keys + (str(key.value),))

    walk(yaml.compose(text), ())
    return lines


def _unknown(raw: dict, valid: tuple[str, ...], keys: tuple[str, ...], fail) -> None:
    for key in raw:
        if key not in valid:
            raise fail(keys + (str(key),), f"unknown key{suggest(str(key), valid)}; valid keys: {', '.join(valid)}")


def _seeds(value: Any, keys: tuple[str, ...], fail) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in value) or len(set(value)) != len(value):
        raise fail(keys, f"must be a non-empty list of distinct integers, got {value!r}")
    return list(value)


def _positive(value: Any, keys: tuple[str, ...], fail, kind=(int, float)) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise fail(keys, f"must be a number > 0, got {value!r}")
    return value


def _shared_base(raw: dict, path: Path, fail) -> dict[str, Any]:
    """The space `base` every claim shares: `base`, then `steps`, `eval_every`, `eval_size` as run-config keys."""
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise fail(("base",), "must be a mapping of run-config values")
    base = dict(base)
    for key, config_key in (("steps", "trainer.steps"), ("eval_size", "task.eval_size"),
                            ("eval_every", "trainer.eval_every")):
        if key in raw:
            base[config_key] = _positive(raw[key], (key,), fail, int)
    if "eval_every" in raw and "trainer.checkpoint_every" not in base:
        base["trainer.checkpoint_every"] = raw["eval_every"]
    return base


def _factors(value: Any, keys: tuple[str, ...], fail) -> dict[str, list]:
    if not isinstance(value, dict) or not value:
        raise fail(keys, "must map dotted run-config keys to their two levels, e.g. "
                         "`algorithm.golden_answers: [true, false]`")
    for key, levels in value.items():
        if not isinstance(levels, list) or len(levels) != 2 or levels[0] == levels[1]:
            raise fail(keys + (str(key),), f"a factor has exactly two distinct levels, got {levels!r}")
    return {str(k): list(v) for k, v in value.items()}


def _claim_arms(raw: dict, keys: tuple[str, ...], fail) -> tuple[dict[str, dict], dict[str, list]]:
    """The claim's grid points by arm label, and its factors (factorial claims)."""
    if ("arms" in raw) == ("factors" in raw):
        raise fail(keys, "give either `arms:` (named arms) or `factors:` (a factorial grid), not both or neither")
    if "factors" in raw:
        factors = _factors(raw["factors"], keys + ("factors",), fail)
        combos = itertools.product(*factors.values())
        points = [dict(zip(factors, combo)) for combo in combos]
        return {arm_name(p): p for p in points}, factors
    arms = raw["arms"]
    if not isinstance(arms, dict) or len(arms) < 2:
        raise fail(keys + ("arms",), "must name at least two arms, each a mapping of run-config values")
    return {str(name): {"arm": str(name)} for name in arms}, {}


def claim_space(study_raw: dict, claim_raw: dict, study_path: Path, seeds: list[int], metric: str,
                name: str) -> dict[str, Any]:
    """The search-space mapping of one claim (`gcpo.sweeps.space` format), `base_config` made absolute."""
    space: dict[str, Any] = {"name": name, "base": {**study_raw["_base"], **(claim_raw.get("base") or {})},
                             "seeds": seeds, "metric": metric, "mode": study_raw.get("mode", "max"),
                             "search": "grid", "max_failures": 1, "keep_checkpoints": "none"}
    if study_raw.get("base_config"):
        space["base_config"] = str((study_path.parent / str(study_raw["base_config"])).resolve())
    if "factors" in claim_raw:
        space["space"] = {key: {"grid": levels} for key, levels in claim_raw["factors"].items()}
    else:
        space["arms"] = claim_raw["arms"]
    return space


def write_space(space: dict[str, Any], path: Path) -> Path:
    """A claim's search space as a file (what `run_sweep` runs and resumes from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _check_space(space: dict[str, Any], keys: tuple[str, ...], fail) -> None:
    """Validate a claim's space with `load_space` (every arm's run config built), the message re-addressed."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_space(space, Path(folder) / "claim.yaml")
        try:
            load_space(path)
        except SpaceError as e:
            message = re.sub(rf"^{re.escape(str(path))}(:\d+)?: ", "", str(e))
            raise fail(keys, message) from e


def _claim(name: str, raw: Any, study_raw: dict, path: Path, fail) -> Claim:
    keys = ("claims", name)
    if name in RESERVED or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise fail(keys, f"a claim's name is a folder name of letters, digits, _ . - and not one of "
                         f"{', '.join(RESERVED)}")
    if not isinstance(raw, dict):
        raise fail(keys, "must be a mapping (arms or factors, reference, seeds, ...)")
    _unknown(raw, CLAIM_KEYS, keys, fail)
    points, factors = _claim_arms(raw, keys, fail)
    reference = str(raw.get("reference", next(iter(points))))
    if reference not in points:
        raise fail(keys + ("reference",), f"{reference!r} is no arm of this claim{suggest(reference, points)}")
    seeds = _seeds(raw["seeds"], keys + ("seeds",), fail) if "seeds" in raw else study_raw["_seeds"]
    metric = str(raw.get("metric", study_raw.get("metric", DEFAULT_METRIC)))
    target = _positive(raw.get("target_difference", study_raw.get("target_difference", DEFAULT_TARGET)),
                       keys + ("target_difference",), fail)
    space = claim_space(study_raw, raw, path, seeds, metric, name)
    _check_space(space, keys, fail)
    arms = [reference] + [a for a in points if a != reference]
    return Claim(name, arms, {a: points[a] for a in arms}, reference, seeds, metric, float(target), space,
                 factors, str(raw.get("description", "")))


def _until_decided(value: Any, fail) -> tuple[int, int]:
    if value is None:
        return 1, 1
    if not isinstance(value, dict):
        raise fail(("until_decided",), f"must be {{looks: K, seeds_per_round: R}}, got {value!r}")
    _unknown(value, UNTIL_DECIDED_KEYS, ("until_decided",), fail)
    looks = _positive(value.get("looks", 3), ("until_decided", "looks"), fail, int)
    per_round = _positive(value.get("seeds_per_round", 1), ("until_decided", "seeds_per_round"), fail, int)
    return looks, per_round


def load_study(path: str | Path) -> Study:
    """Parse and validate a study file (module docstring); every claim's arms are built as run configs."""
    path = Path(path)
    if not path.exists():
        raise StudyError(f"{path}: no such study file")
    text = path.read_text()
    try:
        raw, lines = yaml.safe_load(text) or {}, _key_lines(text)
    except yaml.YAMLError as e:
        raise StudyError(f"{path}: not valid YAML: {e}") from e
    fail = _checker(path, lines)
    if not isinstance(raw, dict):
        raise fail((), "must be a mapping of keys (name, claims, seeds, ...)")
    _unknown(raw, TOP_KEYS, (), fail)
    claims = raw.get("claims")
    if not isinstance(claims, dict) or not claims:
        raise fail(("claims",), "must name at least one claim, e.g. `methods: {reference: grpo, arms: {...}}`")
    if raw.get("mode", "max") not in ("max", "min"):
        raise fail(("mode",), f"must be max or min, got {raw['mode']!r}")
    budget = _positive(raw["budget_hours"], ("budget_hours",), fail) if "budget_hours" in raw else None
    study_raw = {**raw, "_seeds": _seeds(raw.get("seeds", [0, 1, 2]), ("seeds",), fail),
                 "_base": _shared_base(raw, path, fail)}
    looks, per_round = _until_decided(raw.get("until_decided"), fail)
    parsed = {str(n): _claim(str(n), c, study_raw, path, fail) for n, c in claims.items()}
    return Study(str(raw.get("name") or path.stem), path, parsed, study_raw["_seeds"], raw.get("mode", "max"),
                 None if budget is None else float(budget), looks, per_round, str(raw.get("description", "")))


def look_seeds(claim: Claim, study: Study) -> list[list[int]]:
    """The seeds at each of the study's looks: the claim's planned seeds, then `seeds_per_round` more (the next
    integers not yet used) per round, `study.looks` looks in all."""
    seeds, out = list(claim.seeds), [list(claim.seeds)]
    candidate = max(seeds) + 1
    for _ in range(study.looks - 1):
        for _ in range(study.seeds_per_round):
            while candidate in seeds:
                candidate += 1
            seeds.append(candidate)
        out.append(list(seeds))
    return out


def max_trials(study: Study) -> int:
    """Trials of the whole study at its last possible look."""
    return sum(len(c.arms) * len(look_seeds(c, study)[-1]) for c in study.claims.values())


__all__ = ["Claim", "Study", "StudyError", "load_study", "look_seeds", "max_trials", "write_space", "folder_name",
           "arm_name"]
