import pytest

from gcpo.tasks.verifiers import VERIFIERS, check_verifier_name, score


@pytest.mark.parametrize("answer", ["0.5", "1/2", "\\frac{1}{2}", "$\\frac{1}{2}$", "\\frac12", "0.50", "2/4"])
def test_math_accepts_equivalent_forms(answer):
    assert score("math", answer, "0.5")
    assert score("math", answer, "\\frac{1}{2}")


@pytest.mark.parametrize("answer", ["0.6", "2", "x", "one half", "-0.5"])
def test_math_rejects_different_values(answer):
    assert not score("math", answer, "1/2")


def test_math_reads_thousands_separators_and_negatives():
    assert score("math", "1,000", "1000")
    assert score("math", "-22", "-22")
    assert not score("math", "22", "-22")


def test_reasoning_gym_verifiers_are_binary():
    assert score("basic_arithmetic", "-13", "-13")
    assert not score("basic_arithmetic", "x = -13", "-13")  # reasoning-gym would give partial credit
    assert score("gsm_symbolic", "240", "240")
    assert score("gsm_symbolic", "3018.75", "3018.75")
    assert not score("gsm_symbolic", "241", "240")  # reasoning-gym scores this 0.01


def test_unknown_verifier_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown verifier 'nope'.*math"):
        check_verifier_name("nope")
    assert set(VERIFIERS) == {"math", "basic_arithmetic", "gsm_symbolic"}
