"""A run's checkpoint as a Hugging Face model folder (`gcpo export`), usable as `model.name=DIR`.

What it reads (written by `gcpo.training.checkpoint` through Ray Train):
- a run folder `<trainer.output_dir>/<name>/` (`gcpo.run_folder`): the resolved `gcpo_config.yaml`, Ray Train's
  `checkpoint_<time>/` folders, and `checkpoint_manager_snapshot.json`, Ray Train's record of the *committed*
  checkpoints and of the metrics reported with each. A folder it does not list was never committed (a killed
  attempt's, maybe half written): it is picked only when named itself, with a warning.
- a checkpoint folder: `gcpo_step.txt` (the step it was taken after), DeepSpeed's `latest` and tag folder
  `policy/`, and under LoRA `lora.json`. In the tag folder, ZeRO stage 0 writes `mp_rank_00_model_states.pt`,
  whose `module` is the full state dict in the run's dtype; stages 1-3 write every rank's
  `*_optim_states.pt`, each holding its partition of the fp32 master weights (at stage 3 the model states hold
  only empty placeholders).

Choices:
- Stage 0: the saved `module` state dict (memory-mapped, so Adam's moments beside it are never read). Stages
  1-3: DeepSpeed's own consolidation, `deepspeed.utils.zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint`
  (any number of ranks, on CPU, with no process group and no engine), cast to `model.dtype`; the files say
  which applies, not the config. A bf16 run's master weights rounded to bf16 are the engine's bf16 weights.
- The exported model is the base (`resolve_model` of the run's `model.name`, at `model.dtype`) with the
  checkpoint's weights loaded into it: every base parameter must be covered (a tied LM head is covered by the
  embeddings it shares), no name may be unknown. `save_pretrained` writes `model.safetensors` (a tied head once,
  as transformers ties it again on loading) and `config.json` (its dtype `model.dtype`; a run with
  `model.dtype=auto` is exported in float32, which holds its weights exactly whatever it resolved to).
- LoRA: the checkpoint holds the adapters alone; they are merged into the base's adapted layers,
  `W + (alpha / rank) B A` (`gcpo.training.lora.merged_weights`, what the generators get during training),
  computed in fp32 and rounded once to `model.dtype`: a plain dense model, no peft needed to load it.
- The tokenizer and its chat template come from the base (`save_pretrained`); `generation_config.json` is the
  base's when it has one (none otherwise); `gcpo_export.json` records the run, the step, the run's config, the
  metrics reported with the checkpoint, the source checkpoint, the base model and how the weights were read.
- The folder is written into a temporary folder beside `--out` and renamed once complete: a failed export leaves
  nothing behind, and `force` replaces an existing folder only then. A folder holding the run, the checkpoint or
  the base model is never replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml

from gcpo.config import ModelConfig, load_config
from gcpo.console import PREFIX, is_verbose
from gcpo.models import resolve_model
from gcpo.run_folder import RUN_CONFIG, find_run_folder
from gcpo.training.checkpoint import CKPT_TAG, STEP_FILE
from gcpo.training.lora import ADAPTER, LORA_FILE, base_name, check_lora_file, merged_weights, scaling

RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the committed checkpoints
EXPORT_FILE = "gcpo_export.json"
STAGE0_FILE = "mp_rank_00_model_states.pt"


class ExportError(Exception):
    """Nothing to export where asked, or nowhere safe to write it; the message names the path."""


@dataclass(frozen=True)
class Source:
    """The checkpoint to export and the run it belongs to."""

    run_dir: Path
    checkpoint: Path
    step: int
    metrics: dict | None  # reported with it (Ray Train's snapshot); None when the run does not list it
    committed: bool


def checkpoint_step(folder: Path) -> int:
    return int(Path(folder, STEP_FILE).read_text().strip())


def committed_checkpoints(run_dir: Path) -> list[Source]:
    """The run's committed checkpoints still on disk, by step."""
    path = run_dir / RAY_SNAPSHOT
    if not path.exists():
        return []
    found = []
    for result in json.loads(path.read_text()).get("checkpoint_results", []):
        folder = run_dir / result["checkpoint_dir_name"]
        if (folder / STEP_FILE).exists():
            found.append(Source(run_dir, folder, checkpoint_step(folder), result.get("metrics"), True))
    return sorted(found, key=lambda s: s.step)


def find_source(target: str, base: Path, step: int | None = None) -> Source:
    """`target`: a checkpoint folder, a run folder, or a run name (under `base/runs`, or wherever this machine
    wrote it: `gcpo.run_folder.find_run_folder`); the latest committed checkpoint of a run, or the one of `step`."""
    path = Path(target).expanduser()
    if (path / STEP_FILE).exists():
        return _named_checkpoint(path, step)
    run_dir, looked = find_run_folder(target, base)
    if run_dir is None:
        elsewhere = "".join(f" nor in {p}" for p in looked[1:] if p != path)
        raise ExportError(f"no run or checkpoint at {target!r}: no {RUN_CONFIG} in {path}{elsewhere}, and {path} is "
                          f"no checkpoint folder (no {STEP_FILE})")
    found = committed_checkpoints(run_dir)
    if not found:
        raise ExportError(f"the run {run_dir} has no committed checkpoint ({RAY_SNAPSHOT} there lists none "
                          f"that is still on disk)")
    if step is None:
        return found[-1]
    for source in found:
        if source.step == step:
            return source
    raise ExportError(f"the run {run_dir} has no checkpoint of step {step}; its committed checkpoints are of "
                      f"step {', '.join(str(s.step) for s in found)} (a run keeps its latest "
                      f"trainer.keep_checkpoints)")


def _named_checkpoint(path: Path, step: int | None) -> Source:
    """One checkpoint folder, named itself: its run's config must be beside it."""
    run_dir = path.resolve().parent
    if not (run_dir / RUN_CONFIG).exists():
        raise ExportError(f"the checkpoint {path} has no {RUN_CONFIG} beside it (in {run_dir}): the run's model, "
                          f"dtype and LoRA settings are needed")
    listed = {s.checkpoint.resolve(): s for s in committed_checkpoints(run_dir)}
    source = listed.get(path.resolve()) or Source(run_dir, path, checkpoint_step(path), None, False)
    if step is not None and step != source.step:
        raise ExportError(f"--step {step}: the checkpoint {path} is of step {source.step}")
    return source


def check_out(out: Path, force: bool, keep: list[Path]) -> None:
    """Refuse to write over a file, a non-empty folder (unless `force`), or a folder holding any of `keep`."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder")
    for path in keep:
        if path.resolve().is_relative_to(out.resolve()):
            raise ExportError(f"--out {out} holds {path}, which an export never replaces; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} exists and is not empty; pass --force to replace it")


def zero_partitions(checkpoint: Path) -> int:
    """How many ranks' ZeRO partitions (stages 1-3) the checkpoint holds; 0 for a ZeRO stage 0 checkpoint."""
    return len(list((checkpoint / CKPT_TAG).glob("*_optim_states.pt")))


def checkpoint_weights(checkpoint: Path, lora: bool) -> dict[str, torch.Tensor]:
    """The trained weights, full and unpartitioned, under the training module's names (peft's under LoRA)."""
    if zero_partitions(checkpoint) == 0:
        path = checkpoint / CKPT_TAG / STAGE0_FILE
        if not path.exists():
            raise ExportError(f"{checkpoint} is no DeepSpeed checkpoint: neither {path} nor ZeRO partitions")
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)["module"]
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    chatter = contextlib.nullcontext() if is_verbose() else contextlib.redirect_stdout(io.StringIO())
    with chatter:  # it prints what it reads
        return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=CKPT_TAG,
                                                        exclude_frozen_parameters=lora)


def merge_adapters(base: dict[str, torch.Tensor], adapters: dict[str, torch.Tensor],
                   lora_scaling: float) -> dict[str, torch.Tensor]:
    """The adapted layers' dense weights `W + scaling * B A` (fp32) from the base model's state dict and a
    checkpoint's adapters (peft names), under the base model's names."""
    others = sorted(k for k in adapters if ".lora_A." not in k and ".lora_B." not in k)
    if others:
        raise ExportError(f"a LoRA checkpoint should hold adapters only; it also holds {others[:3]}")
    state = {k: v.float() for k, v in adapters.items()}
    for name in adapters:
        if name.endswith(f".lora_A.{ADAPTER}.weight"):
            layer = name[: -len(f".lora_A.{ADAPTER}.weight")]
            state[f"{layer}.base_layer.weight"] = base[base_name(f"{layer}.weight")].float()
    return merged_weights(state, lora_scaling)


def build_model(model_cfg: ModelConfig, base_dir: Path, trained: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The base model at `model.dtype` with the trained (or, under LoRA, merged) weights loaded into it."""
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, model_cfg.dtype)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    lora = model_cfg.lora.rank > 0
    weights = merge_adapters(model.state_dict(), trained, scaling(model_cfg.lora)) if lora else trained
    if lora and not weights:
        raise ExportError("the LoRA checkpoint holds no adapters")
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=False)
    if unexpected:
        raise ExportError(f"the checkpoint's weights {unexpected[:3]} are not the base model's ({base_dir})")
    state = model.state_dict()
    loaded = {state[k].data_ptr() for k in state if k not in missing}  # a tied head is loaded with the embeddings
    uncovered = [k for k in missing if state[k].data_ptr() not in loaded]
    if uncovered and not lora:
        raise ExportError(f"the checkpoint lacks the weights {uncovered[:3]} of the base model ({base_dir})")
    return model


def export_record(source: Source, model_cfg: ModelConfig, base_dir: Path) -> dict:
    """What `gcpo_export.json` holds."""
    partitions = zero_partitions(source.checkpoint)
    return {
        "run_name": source.run_dir.name, "step": source.step, "source_checkpoint": str(source.checkpoint.resolve()),
        "committed": source.committed, "base_model": model_cfg.name, "base_model_dir": str(base_dir),
        "dtype": model_cfg.dtype,
        "lora_merged": json.loads((source.checkpoint / LORA_FILE).read_text()) if model_cfg.lora.rank else None,
        "weights_from": f"ZeRO partitions of {partitions} rank(s), consolidated by DeepSpeed's zero_to_fp32"
        if partitions else f"ZeRO stage 0 module state ({STAGE0_FILE})",
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics": source.metrics, "config": yaml.safe_load((source.run_dir / RUN_CONFIG).read_text()),
    }


def write_folder(model: torch.nn.Module, base_dir: Path, out: Path, record: dict,
                 record_file: str = EXPORT_FILE) -> None:
    """Weights, config, tokenizer, the base's generation config and `record` (as `record_file`, by default
    `gcpo_export.json`), renamed into `out`."""
    from transformers import AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-export-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp)
        (tmp / "generation_config.json").unlink(missing_ok=True)  # transformers derives one; keep the base's
        if (base_dir / "generation_config.json").exists():
            shutil.copy(base_dir / "generation_config.json", tmp / "generation_config.json")
        (tmp / record_file).write_text(json.dumps(record, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Exported:
    out: Path
    source: Source


def export_checkpoint(target: str, out: str | Path, *, step: int | None = None, force: bool = False,
                      base: Path | None = None, say: Callable[[str], None] = print) -> Exported:
    """Export `target`'s checkpoint (see `find_source`) into the folder `out`; `say` gets the progress lines."""
    source = find_source(target, base or Path.cwd(), step)
    cfg = load_config(source.run_dir / RUN_CONFIG).model
    if cfg.dtype == "auto":  # whatever the run resolved it to, fp32 holds its weights exactly, on any machine
        cfg = dataclasses.replace(cfg, dtype="float32")
    out = Path(out).expanduser()
    base_dir = resolve_model(cfg)
    check_out(out, force, [source.run_dir, source.checkpoint, base_dir])
    if not source.committed:
        say(f"{PREFIX} warning: {source.checkpoint} is not among its run's committed checkpoints (Ray Train never "
            f"registered it: it may be half-written)")
    lora = cfg.lora.rank > 0
    if lora:
        check_lora_file(source.checkpoint, cfg.name, cfg.lora)
    say(f"{PREFIX} exporting step {source.step} of run {source.run_dir.name} ({source.checkpoint})")
    trained = checkpoint_weights(source.checkpoint, lora)
    say(f"{PREFIX} base model {cfg.name} ({base_dir}), {cfg.dtype}"
        + (f", LoRA rank {cfg.lora.rank} adapters merged (alpha {cfg.lora.alpha:g})" if lora else ""))
    model = build_model(cfg, base_dir, trained)
    write_folder(model, base_dir, out, export_record(source, cfg, base_dir))
    return Exported(out, source)
