"""The sync check's thresholds: one per (trainer, generator) dtype pair, each between the gaps measured for it
(benchmarks/results/sync_gap.json), and the warning training says above it."""

import json
from pathlib import Path

import pytest

from gcpo.rollout.agreement import DEFAULT_TOLERANCE, SYNC_TOLERANCE, Agreement, sync_tolerance, sync_warning

DTYPES = ("float32", "bfloat16")
MEASURED = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "sync_gap.json"


def test_every_dtype_pair_has_a_threshold_and_fp32_is_the_default():
    assert set(SYNC_TOLERANCE) == {(t, g) for t in DTYPES for g in DTYPES}
    assert DEFAULT_TOLERANCE == sync_tolerance("float32", "float32")
    assert Agreement(DEFAULT_TOLERANCE, 1.0, 10).ok() and not Agreement(2 * DEFAULT_TOLERANCE, 1.0, 10).ok()
    with pytest.raises(ValueError, match="auto"):
        sync_tolerance("auto", "float32")


def test_each_threshold_lies_between_the_measured_in_sync_and_skipped_sync_gaps():
    """With a margin on both sides: the largest in-sync gap well below, the smallest gap after the skipped update
    the table's docstring names (3 steps at lr 1e-2, the tests' negative control) well above."""
    record = json.loads(MEASURED.read_text())
    for pair, gaps in record["pairs"].items():
        tolerance = sync_tolerance(*pair.split("/"))
        assert gaps["in_sync"]["max"] * 2 <= tolerance, pair
        assert tolerance * 2 <= gaps["skipped"]["3 steps, lr 1e-2"]["min"], pair


def test_the_warning_names_the_gap_the_threshold_and_the_dtypes():
    tolerance = sync_tolerance("float32", "bfloat16")
    assert sync_warning(tolerance, "float32", "bfloat16") is None  # at the threshold: in sync
    line = sync_warning(3 * tolerance, "float32", "bfloat16")
    assert "trainer float32" in line and "generators bfloat16" in line and f"{tolerance:.0e}" in line
    assert sync_warning(float("nan"), "float32", "float32") is None  # no comparable tokens: nothing to say
