"""`gcpo export RUN_OR_CHECKPOINT --out DIR [--step N] [--force]`.

Writes a run's checkpoint (its latest committed one, or the one of step N) as a Hugging Face model folder:
safetensors weights in the run's `model.dtype`, `config.json`, the tokenizer and its chat template, the base's
`generation_config.json`, and `gcpo_export.json` (run, step, config, metrics, source, base). Any ZeRO stage; a
LoRA run's adapters are merged into the base. Runs on CPU without Ray. The folder then serves as `model.name=DIR`
for `gcpo train`, `gcpo eval`, `gcpo sweep` and the generators. The work is `gcpo.standalone.export`'s.
"""

from __future__ import annotations

import argparse

from gcpo.console import PREFIX, add_verbose_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                        help="a run folder (runs/<name>), a run name under runs/, or one checkpoint_* folder")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="the folder to write the model into")
    parser.add_argument("--step", type=int, metavar="N",
                        help="export the checkpoint of step N (default: the run's latest committed one)")
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")
    add_verbose_argument(parser)


def run(args: argparse.Namespace) -> int:
    from gcpo.standalone.export import export_checkpoint

    exported = export_checkpoint(args.run, args.out, step=args.step, force=args.force,
                                 say=lambda line: print(line, flush=True))
    size = sum(f.stat().st_size for f in exported.out.rglob("*") if f.is_file())
    print(f"{PREFIX} wrote step {exported.source.step} of run {exported.source.run_dir.name} to {exported.out} "
          f"({size / 2**20:.1f} MiB); use it with model.name={exported.out}, e.g. "
          f"gcpo eval model.name={exported.out}", flush=True)
    return 0
