"""Prefix hints' two rules against hand computations: the hint length, and the adaptive controller's direction."""

import pytest

from gcpo.algorithms import adapt_hint_fraction, hint_length


def test_hint_length_is_the_floor_of_the_fraction_and_never_the_whole_answer():
    assert hint_length(10, 0.5) == 5
    assert hint_length(7, 0.5) == 3  # floor(3.5)
    assert hint_length(10, 0.0) == 0
    assert hint_length(10, 1.0) == 9  # all but the last token
    assert hint_length(1, 1.0) == 0
    assert hint_length(0, 0.7) == 0


def test_the_controller_moves_the_fraction_toward_the_target_success():
    assert adapt_hint_fraction(0.5, 0.0, target=0.5, rate=0.5) == pytest.approx(0.75)  # all wrong: longer hint
    assert adapt_hint_fraction(0.5, 1.0, target=0.5, rate=0.5) == pytest.approx(0.25)  # all right: shorter
    assert adapt_hint_fraction(0.5, 0.5, target=0.5, rate=0.5) == 0.5  # on target: unchanged
    assert adapt_hint_fraction(0.3, None, target=0.5, rate=0.5) == 0.3  # no hinted sample: unchanged
    assert adapt_hint_fraction(0.9, 0.0, target=0.5, rate=0.5) == 1.0  # clipped to [0, 1]
    assert adapt_hint_fraction(0.1, 1.0, target=0.5, rate=0.5) == 0.0


def test_a_scripted_success_sequence_lengthens_then_shortens_the_hint():
    """Failing steps lengthen the hint, succeeding steps shorten it, and a success rate that answers the hint
    length (longer hints succeed more) settles the fraction where success meets the target."""
    fraction, path = 0.2, []
    for success in (0.0, 0.0, 0.25, 1.0, 1.0):
        fraction = adapt_hint_fraction(fraction, success, target=0.5, rate=0.5)
        path.append(fraction)
    assert path == pytest.approx([0.45, 0.7, 0.825, 0.575, 0.325])
    fraction = 0.0
    for _ in range(60):  # a task where success = fraction (a hint of the whole answer always succeeds)
        fraction = adapt_hint_fraction(fraction, fraction, target=0.5, rate=0.5)
    assert fraction == pytest.approx(0.5, abs=1e-6)
