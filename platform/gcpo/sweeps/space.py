"""Search-space files (`search_spaces/*.yaml`): what a sweep varies, what it optimises, and its budget.

Format (every top-level key optional except `space`):

    name: ablation_ga_kl_is          # the sweep's name (default: the file's stem)
    description: ...
    base_config: ../configs/study.yaml   # a run-config YAML (as `gcpo train --config`) several spaces share;
                                     # relative to this file; its values come first, `base` then overrides them
    base:                            # run-config values every trial shares (dotted keys or nested maps)
      preset: gcpo
      trainer.steps: 12
    arms:                            # optional named arms, each a set of run-config values; the sweep then
      gcpo: {preset: gcpo}           # varies `arm: {grid: [every name]}` crossed with `space` and the seeds
      gcpo_no_golden: {preset: gcpo, algorithm.golden_answers: false}
    space:                           # dotted config key -> one spec (optional when `arms` is given)
      algorithm.golden_answers: {grid: [true, false]}     # every value, crossed with the other grids
      algorithm.ratio_level: {choice: [token, sequence]}  # sampled
      trainer.lr: {loguniform: [1.0e-6, 1.0e-4]}          # also uniform: [lo, hi], randint: [lo, hi)
    seeds: [0, 1]                    # trainer.seed values; every arm runs once per seed (grid searches)
    metric: eval/basic_arithmetic/pass_at_1
    mode: max
    search: grid                     # grid (all grid points; sampled specs drawn at random) | optuna (TPE)
    trials: 1                        # samples per grid point (grid) or the trial budget (optuna)
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}   # or none (default)
    max_failures: 1                  # retries of a failed trial
    keep_checkpoints: best           # when the sweep ends: best (the best finished trial's) | all | none

Contract: `load_space(path)` returns a validated `SearchSpace` or raises `SpaceError` naming the file, the line
and the offending key (unknown top-level keys, unknown config keys with the nearest valid one, malformed specs,
values the run config rejects, optuna with grids or several seeds: TPE samples, it does not enumerate).
Precedence inside a trial: defaults <- preset <- `base` (and command-line overrides) <- the arm's values <- the
trial's `space` values.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gcpo.config import ConfigError, load_config, parse_override, valid_keys
from gcpo.errors import suggest

SPEC_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
TOP_KEYS = ("name", "description", "base_config", "base", "arms", "space", "seeds", "metric", "mode", "search", "trials", "scheduler",
            "max_failures", "keep_checkpoints")
KEEP_CHECKPOINTS = ("best", "all", "none")
SCHEDULER_KEYS = ("type", "grace_period", "reduction_factor", "max_t")


class SpaceError(ValueError):
    """A search-space file is malformed; the message names the file, the line and the key."""


@dataclass(frozen=True)
class Spec:
    kind: Literal["grid", "choice", "uniform", "loguniform", "randint"]
    values: tuple  # grid/choice: the values; uniform/loguniform/randint: (low, high)


@dataclass
class SearchSpace:
    name: str
    path: Path
    base: dict[str, Any]
    space: dict[str, Spec]
    seeds: list[int] = field(default_factory=lambda: [0])
    metric: str = "eval/basic_arithmetic/pass_at_1"
    mode: Literal["max", "min"] = "max"
    search: Literal["grid", "optuna"] = "grid"
    trials: int = 1
    scheduler: dict[str, Any] | None = None
    max_failures: int = 1
    keep_checkpoints: Literal["best", "all", "none"] = "best"
    description: str = ""
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm name -> dotted run-config values

    @property
    def swept_keys(self) -> list[str]:
        """The keys that name an arm (the seed is not one: seeds are repeats of an arm)."""
        return list(self.space)

    @property
    def grid_points(self) -> int:
        return math.prod(len(s.values) for s in self.space.values() if s.kind == "grid") or 1

    @property
    def total_trials(self) -> int:
        if self.search == "optuna":
            return self.trials
        return self.grid_points * len(self.seeds) * self.trials

    def grid_arms(self) -> list[dict[str, Any]]:
        """Every combination of the grid specs (sampled specs are drawn per trial and not listed)."""
        grids = {k: s.values for k, s in self.space.items() if s.kind == "grid"}
        return [dict(zip(grids, combo)) for combo in itertools.product(*grids.values())]


def _lines(text: str) -> dict[tuple[str, ...], int]:
    """(key path) -> 1-based line of that key in the YAML text, for error messages."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (str(key.value),)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)

    walk(yaml.compose(text), ())
    return lines


def _read_space_file(path: Path) -> tuple[Any, Any]:
    """The file's YAML and `fail(keys, message)`: a `SpaceError` naming `FILE:LINE` of `keys` and the keys."""
    if not path.exists():
        raise SpaceError(f"{path}: no such search-space file")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
        lines = _lines(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML: {e}") from e

    def fail(keys: tuple[str, ...], message: str) -> SpaceError:
        line = lines.get(keys)
        where = f"{path}:{line}" if line else str(path)
        return SpaceError(f"{where}: {'.'.join(keys) if keys else 'file'}: {message}")

    if not isinstance(raw, dict):
        raise fail((), "must be a mapping of keys (name, base, space, seeds, metric, ...)")
    for key in raw:
        if key not in TOP_KEYS:
            raise fail((key,), f"unknown key{suggest(str(key), TOP_KEYS)}; valid keys: {', '.join(TOP_KEYS)}")
    return raw, fail


def _settings(raw: dict, space: dict[str, Spec], fail) -> dict[str, Any]:
    """The file's settings beside its space (seeds, mode, search, trials, max_failures, keep_checkpoints,
    metric), each checked."""
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise fail(("seeds",), f"must be a non-empty list of integers, got {seeds!r}")
    if "trainer.seed" in space:
        raise fail(("space", "trainer.seed"), "use the top-level `seeds:` list for seeds")
    mode = raw.get("mode", "max")
    if mode not in ("max", "min"):
        raise fail(("mode",), f"must be max or min, got {mode!r}")
    search = raw.get("search", "grid")
    if search not in ("grid", "optuna"):
        raise fail(("search",), f"must be grid or optuna, got {search!r}")
    trials = raw.get("trials", 1)
    if not isinstance(trials, int) or trials < 1:
        raise fail(("trials",), f"must be an integer >= 1, got {trials!r}")
    max_failures = raw.get("max_failures", 1)
    if not isinstance(max_failures, int) or max_failures < 0:
        raise fail(("max_failures",), f"must be an integer >= 0, got {max_failures!r}")
    keep = raw.get("keep_checkpoints", SearchSpace.keep_checkpoints)
    if keep not in KEEP_CHECKPOINTS:
        raise fail(("keep_checkpoints",), f"must be one of {', '.join(KEEP_CHECKPOINTS)}, got {keep!r}")
    metric = raw.get("metric", SearchSpace.metric)
    if not isinstance(metric, str) or not metric:
        raise fail(("metric",), f"must name a logged metric such as eval/<task>/pass_at_1, got {metric!r}")
    return {"seeds": seeds, "mode": mode, "search": search, "trials": trials, "max_failures": max_failures,
            "keep_checkpoints": keep, "metric": metric}


def _check_optuna(settings: dict[str, Any], space: dict[str, Spec], arms: dict, fail) -> None:
    """Optuna samples: no named arms, no grid, one seed."""
    if settings["search"] != "optuna":
        return
    grids = [k for k, s in space.items() if s.kind == "grid"]
    if arms:
        raise fail(("arms",), "optuna samples, it does not enumerate named arms: use search: grid")
    if grids:
        raise fail(("space", grids[0]), "optuna samples, it does not enumerate: use choice instead of grid")
    if len(settings["seeds"]) > 1:
        raise fail(("seeds",), "an optuna search runs one seed per trial; give one seed or use search: grid")


def load_space(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> SearchSpace:
    """Parse and validate a search-space file; `overrides` (dotted `key=value`) join its `base`."""
    path = Path(path)
    raw, fail = _read_space_file(path)
    known = set(valid_keys()) | {"preset"}
    arms = _arms(raw.get("arms"), known, fail)
    raw_space = raw.get("space", {} if arms else None)
    if not isinstance(raw_space, dict) or not (raw_space or arms):
        raise fail(("space",), "must map at least one dotted config key to a spec, e.g. "
                               "`trainer.lr: {loguniform: [1.0e-6, 1.0e-4]}` (or give named `arms:`)")
    if "arm" in raw_space:
        raise fail(("space", "arm"), "`arm` is the grid over the names in `arms:`; list the arms there")
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise fail(("base",), "must be a mapping of config values")
    base = _base_config(path, raw.get("base_config"), fail) | _flatten(base)
    space = {"arm": Spec("grid", tuple(arms))} if arms else {}
    space |= {key: _spec(key, value, known, fail) for key, value in raw_space.items()}
    settings = _settings(raw, space, fail)
    _check_optuna(settings, space, arms, fail)
    scheduler = _scheduler(raw.get("scheduler"), fail)
    space_obj = SearchSpace(name=str(raw.get("name") or path.stem), path=path, base=dict(base), space=space,
                            scheduler=scheduler, description=str(raw.get("description", "")), arms=arms, **settings)
    for key, value in (parse_override(o) for o in overrides):
        space_obj.base[key] = value
    _check_against_config(space_obj, fail)
    return space_obj


def _base_config(space_path: Path, value: Any, fail) -> dict[str, Any]:
    """`base_config:` -> the flat values of that run-config YAML (a path relative to the space file)."""
    if value is None:
        return {}
    if not isinstance(value, str) or not value:
        raise fail(("base_config",), f"must be the path of a run-config YAML file, got {value!r}")
    config_path = (space_path.parent / value).resolve()
    if not config_path.exists():
        raise fail(("base_config",), f"no such file: {config_path}")
    try:
        values = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise fail(("base_config",), f"{config_path} is not valid YAML: {e}") from e
    if not isinstance(values, dict):
        raise fail(("base_config",), f"{config_path} must be a mapping of config values")
    return _flatten(values)


def _arms(value: Any, known: set[str], fail) -> dict[str, dict[str, Any]]:
    """`arms:` -> {name: {dotted key: value}}, every key checked against the run config."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise fail(("arms",), "must map arm names to run-config values, e.g. "
                              "`gcpo_no_golden: {preset: gcpo, algorithm.golden_answers: false}`")
    arms = {}
    for name, values in value.items():
        if not isinstance(values, dict):
            raise fail(("arms", str(name)), f"must be a mapping of run-config values, got {values!r}")
        flat = _flatten(values)
        for key in flat:
            if key not in known:
                raise fail(("arms", str(name), key), f"unknown config key{suggest(key, sorted(known))}")
        arms[str(name)] = flat
    return arms


def _spec(key: str, value: Any, known: set[str], fail) -> Spec:
    where = ("space", key)
    if key not in known:
        raise fail(where, f"unknown config key{suggest(key, sorted(known))}")
    if not isinstance(value, dict) or len(value) != 1:
        raise fail(where, f"must be one of {{{', '.join(f'{k}: ...' for k in SPEC_KINDS)}}}, got {value!r}")
    (kind, args), = value.items()
    if kind not in SPEC_KINDS:
        raise fail(where + (str(kind),), f"unknown spec{suggest(str(kind), SPEC_KINDS)}; valid: {', '.join(SPEC_KINDS)}")
    if not isinstance(args, list) or not args:
        raise fail(where + (kind,), f"must be a non-empty list, got {args!r}")
    if kind in ("uniform", "loguniform", "randint"):
        if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) or not args[0] < args[1]:
            raise fail(where + (kind,), f"must be [low, high] with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise fail(where + (kind,), f"loguniform needs low > 0, got {args!r}")
        if kind == "randint" and not all(isinstance(a, int) for a in args):
            raise fail(where + (kind,), f"randint needs integers, got {args!r}")
    return Spec(kind, tuple(args))


def _scheduler(value: Any, fail) -> dict[str, Any] | None:
    if value in (None, "none"):
        return None
    if value == "asha":
        value = {"type": "asha"}
    if not isinstance(value, dict) or value.get("type") != "asha":
        raise fail(("scheduler",), f"must be none, asha or {{type: asha, grace_period: N, reduction_factor: N}}, "
                                   f"got {value!r}")
    for key in value:
        if key not in SCHEDULER_KEYS:
            raise fail(("scheduler", key), f"unknown key{suggest(str(key), SCHEDULER_KEYS)}")
    return {"type": "asha", "grace_period": int(value.get("grace_period", 1)),
            "reduction_factor": int(value.get("reduction_factor", 2)), "max_t": value.get("max_t")}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested maps in `base` -> dotted keys (`{trainer: {steps: 2}}` -> `{'trainer.steps': 2}`)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_against_config(space: SearchSpace, fail) -> None:
    """Build the run config of every listed value so bad base or space values fail now, by name."""
    try:
        cfg = trial_config(space, {})
    except ConfigError as e:
        raise fail(("base",), str(e)) from e
    if "/mean_at_" in space.metric and cfg.trainer.eval_intermediate == "greedy":
        raise fail(("metric",), f"{space.metric} is not logged by the greedy-only intermediate evaluations "
                                "(trainer.eval_intermediate=greedy): use pass_at_1, or eval_intermediate=full")
    for key, spec in space.space.items():
        for value in spec.values if spec.kind in ("grid", "choice") else spec.values[:1]:
            try:
                trial_config(space, {key: value})
            except ConfigError as e:
                raise fail(("arms", value) if key == "arm" else ("space", key), str(e)) from e


def trial_config(space: SearchSpace, params: dict[str, Any]):
    """The run config of one trial: defaults, the preset, the space's base, the arm's values, the trial's values."""
    params = dict(params)
    arm = space.arms[params.pop("arm")] if "arm" in params else {}
    return load_config(overrides=_flatten(space.base) | arm | params)
