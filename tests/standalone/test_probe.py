"""`gcpo probe` (`gcpo.standalone.probe`): the base config and the switches it takes from a space, the comparison and
its verdict, and the command end to end on the tiny model."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gcpo.sweeps import load_space
from gcpo.standalone.probe import Measurement, base_values, compare, format_report, probe_variants, verdict

REPO = Path(__file__).resolve().parents[2]
SPACE = """base:
  preset: gcpo
  trainer.steps: 3
space:
  algorithm.golden_ratio: {grid: [clip, unclipped]}
  algorithm.kl_coef: {choice: [0.0, 0.04]}
  trainer.lr: {grid: [1.0e-4, 1.0e-3]}
  algorithm.clip_high: {uniform: [0.2, 0.3]}
"""


def test_the_base_is_the_spaces_base_under_the_command_line(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    values = base_values(space.base, "grpo", ["algorithm.kl_coef=0.01", "model.name=tiny"], has_config=False)
    assert values == {"preset": "grpo", "trainer.steps": 3, "algorithm.kl_coef": 0.01, "model.name": "tiny"}
    assert base_values({}, None, [], has_config=False) == {"preset": "gcpo"}  # as `gcpo train`
    assert base_values({}, None, [], has_config=True) == {}  # the file says
    variants, skipped = probe_variants(space, values)
    assert [(v.key, v.value) for v in variants] == [("algorithm.golden_ratio", "clip"),
                                                    ("algorithm.golden_ratio", "unclipped"),
                                                    ("algorithm.kl_coef", 0.0), ("algorithm.kl_coef", 0.04)]
    unclipped = variants[1].cfg
    assert unclipped.preset == "grpo" and unclipped.algorithm.golden_ratio == "unclipped"
    assert unclipped.algorithm.kl_coef == 0.01 and unclipped.trainer.steps == 3
    assert skipped == ["trainer.lr: not a switch of one update (the probe measures one model's gradient on one batch)",
                       "algorithm.clip_high: a uniform range, not a list of values"]


def test_named_arms_are_probed_as_one_axis():
    space = load_space(REPO / "search_spaces" / "paper_claims.yaml")
    variants, skipped = probe_variants(space, base_values(space.base, None, ["model.name=tiny"], False))
    assert [v.value for v in variants] == ["grpo", "dapo", "gpg", "gcpo", "gcpo_no_golden", "ga_sft"] and not skipped
    assert variants[5].cfg.algorithm.loss == "sft" and not variants[4].cfg.algorithm.golden_answers


def test_compare_and_verdict():
    g = torch.tensor([3.0, 4.0])
    assert compare(g, g) == (1.0, 1.0) and verdict(1.0, 1.0, False) == "no-op here"
    cosine, ratio = compare(torch.tensor([4.0, 3.0]), g)
    assert cosine == pytest.approx(24 / 25) and ratio == 1.0 and verdict(cosine, ratio, False) == "acts"
    assert compare(2 * g, g) == (1.0, 2.0)
    assert verdict(1.0, 2.0, False) == "acts (scale only)" and verdict(1.0, 1.5, True) == "acts (step size)"
    assert verdict(0.9995, 1.0005, False) == "no-op here"  # inside both thresholds
    zero = torch.zeros(2)
    assert compare(zero, zero) == (1.0, 1.0)
    cosine, ratio = compare(g, zero)
    assert math.isnan(cosine) and ratio == math.inf and verdict(cosine, ratio, False) == "acts"


def test_the_report_names_each_value_once_per_switch():
    rows = [Measurement("algorithm.kl_coef", 0.0, 1.0, 1.0, 2.0, 1.0, 0.25, "base"),
            Measurement("algorithm.kl_coef", 0.04, 0.5, 1.2, 2.4, 1.0, 0.25, "acts"),
            Measurement("algorithm.adv_norm", "none", 1.0, 0.5, 1.0, 1.0, None, "acts (scale only)")]
    text = format_report("probe", {"grad_norm": 2.0, "policy/ratio_mean": 1.01, "policy/clip_frac": 0.25}, rows,
                         ["trainer.lr: skipped"])
    lines = text.splitlines()
    assert lines[0] == "probe: base |grad| 2, ratio_mean 1.0100, clip_frac 0.250"
    assert lines[3].split() == ["algorithm.kl_coef", "0.0", "1.0000", "1.0000", "2", "1", "0.250", "base"]
    assert lines[4].split() == ["0.04", "0.5000", "1.2000", "2.4", "1", "0.250", "acts"]
    assert lines[5].startswith("algorithm.adv_norm") and lines[5].endswith(" -  acts (scale only)")
    assert "not probed: trainer.lr: skipped" in text and text.endswith("Adam undo most of such a change")


@pytest.mark.integration
def test_the_probe_command_on_the_tiny_model(tmp_path):
    """The whole command: a real batch of the tiny model (transformers engine, the real task and verifiers), a
    DeepSpeed engine in its own process group, one step off, one line per value."""
    (tmp_path / "space.yaml").write_text(SPACE)
    env = {**{k: v for k, v in os.environ.items() if k != "GCPO_VERBOSE"},
           "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "gcpo.cli", "probe", "--space", "space.yaml", "--steps-off", "1", "model.name=tiny",
         "rollout.max_new_tokens=8", "rollout.prompts_per_step=2", "task.train_size=8", "task.eval_size=2",
         "trainer.lr=1e-3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "[gcpo] probe: 4 values of 2 switches on one batch of tiny"
    assert lines[1].startswith("gcpo probe space.yaml: preset gcpo, 2 prompts x 4, the policy 1 step(s) off")
    rows = {tuple(line.split()[:2]): line for line in lines if line.startswith("algorithm.")}
    assert rows[("algorithm.golden_ratio", "clip")].endswith("base")
    assert rows[("algorithm.kl_coef", "0.0")].endswith("base")
    others = [line.split() for line in lines[4:] if line and not line.startswith(("algorithm.", "not probed"))]
    # one step at lr 1e-3 moves every sequence ratio past gcpo's 4e-4 clip: the base gradient is zero, and the
    # golden rows (unclipped) or KL bring one back
    assert [(row[0], row[-1]) for row in others] == [("unclipped", "acts"), ("0.04", "acts")]
    assert "not probed: trainer.lr" in done.stdout and "not probed: algorithm.clip_high" in done.stdout


@pytest.mark.integration
def test_the_clip_calibration_on_the_tiny_model(tmp_path):
    """`gcpo probe --calibrate-clip`: two probe batches of the tiny model (4 groups, two mini-batches), one update
    at lr 1e-3 on each first half; the calibrated sequence range's clip fraction matches the token range's within a
    token of the pooled count, where GSPO's range clips more; the JSON holds what was printed."""
    import json

    env = {**{k: v for k, v in os.environ.items() if k != "GCPO_VERBOSE"},
           "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "gcpo.cli", "probe", "--calibrate-clip", "--batches", "2", "--out", "cal.json",
         "--preset", "gcpo", "model.name=tiny", "rollout.max_new_tokens=8", "rollout.prompts_per_step=4",
         "task.train_size=16", "task.eval_size=2", "trainer.lr=1e-3", "trainer.mini_batches=2",
         "algorithm.clip_low=0.01", "algorithm.clip_high=0.01"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[gcpo] probe batch 2/2: 8 rows in the second mini-batch" in done.stdout
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert cal["token_range"] == [0.01, 0.01] and cal["base_sequence_range"] == [3e-4, 4e-4]
    low, high = cal["sequence_range"]
    assert high == pytest.approx(low * 4 / 3, rel=0.01)
    learnable = sum(p["learnable_tokens"] for p in cal["per_batch"])
    calibrated = sum(p["sequence_calibrated"] * p["learnable_tokens"] for p in cal["per_batch"]) / learnable
    assert calibrated <= cal["target"] + 1e-9 and calibrated >= cal["target"] - 0.25  # a step function of the range
    base = sum(p["sequence_base"] * p["learnable_tokens"] for p in cal["per_batch"]) / learnable
    assert base >= calibrated
    assert f"use it: algorithm.clip_low_sequence={low:g} algorithm.clip_high_sequence={high:g}" in done.stdout
