"""Do the ablation switches act in the study regime? Short runs from the warm start, one per switch value.

    .venv/bin/python benchmarks/study_regime.py [--steps 2] [--arms token,sequence,kl] [KEY=VALUE ...]

Every arm is `gcpo train --config configs/study.yaml --preset gcpo` (the warm start, G = 8, two mini-batches per
step; KEY=VALUE on top, e.g. `trainer.lr=3e-5`) with the ablation grid's clip ranges (token 0.2 / 0.28, sequence 3e-4 / 4e-4), the same seed and data, no
held-out evaluation, and one change (`ARMS`): `token` (the token-level ratio), `sequence` (GSPO's sequence-level
ratio, the gcpo preset's), `kl` (token ratio + KL 0.04 to the warm start). Per step, from MLflow: the clip
fraction and mean ratio of the updates (the second mini-batch sees a moved policy), the pre-clip gradient norm,
the policy loss, the KL and the entropy. Writes benchmarks/results/study_regime.json and study_regime.md (the
committed runs were renamed by their learning rate: study_regime_lr3e-5.*, study_regime_lr1e-4.*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COMMON = ["algorithm.clip_low=0.2", "algorithm.clip_high=0.28", "algorithm.clip_low_sequence=3e-4",
          "algorithm.clip_high_sequence=4e-4", "trainer.eval_every=0", "tracking.log_rollouts_every=0"]
ARMS = {
    "token": ["algorithm.ratio_level=token"],
    "sequence": ["algorithm.ratio_level=sequence"],
    "kl": ["algorithm.ratio_level=token", "algorithm.kl_coef=0.04"],
}
KEYS = ["policy/clip_frac", "policy/ratio_mean", "grad/norm", "loss/policy", "kl/mean", "policy/entropy",
        "groups/all_wrong_frac", "reward/accuracy", "time/step_s"]


def run_arm(name: str, args, work: Path) -> dict:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{work}/mlflow.db"
    cmd = [sys.executable, "-m", "gcpo.cli", "train", "--config", str(ROOT / "configs" / "study.yaml"), "--preset",
           "gcpo", "--name", f"regime-{name}", *COMMON, *ARMS[name], f"trainer.steps={args.steps}",
           f"trainer.checkpoint_every={args.steps}", f"tracking.uri={uri}", "tracking.experiment=study_regime",
           f"trainer.output_dir={work}/runs", *args.overrides]
    subprocess.run(cmd, check=True, cwd=work)
    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("study_regime").experiment_id],
                             filter_string=f"tags.`gcpo.run_name` = 'regime-{name}'")[0]
    return {key: [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
            for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gcpo-bench-regime-"))
    started, load_before = time.time(), Path("/proc/loadavg").read_text().split()[:3]
    arms = {name: run_arm(name, args, work) for name in args.arms.split(",")}
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
              "settings": vars(args), "arms": arms, "seconds": round(time.time() - started),
              "load_before": load_before, "load_after": Path("/proc/loadavg").read_text().split()[:3]}
    lines = ["| metric (per step) | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for key in KEYS:
        lines.append(f"| `{key}` | " + " | ".join(
            ", ".join(f"{v:.4g}" for v in values[key]) or "-" for values in arms.values()) + " |")
    md = (f"Study regime (configs/study.yaml, preset gcpo, {args.steps} steps per arm), {result['date']}, "
          f"{result['machine']}, {result['seconds']} s in all; load average before {' '.join(load_before)}, after "
          f"{' '.join(result['load_after'])}.\n\n" + "\n".join(lines) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "study_regime.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "study_regime.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
