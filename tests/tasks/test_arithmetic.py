import random
from fractions import Fraction

import pytest

from gcpo.tasks.arithmetic import UnusableExpression, solve


def test_two_terms_is_expression_equals_value():
    assert solve("3 + 45") == ("3 + 45 = 48.\n<answer>48</answer>", 48)
    assert solve("2 - -1") == ("2 - -1 = 3.\n<answer>3</answer>", 3)
    assert solve("( -9 / 9 )") == ("-9 / 9 = -1.\n<answer>-1</answer>", -1)


def test_multi_term_follows_precedence_one_operation_per_step():
    text, value = solve("2 - -3 * -8")
    assert text == "2 - -3 * -8 = 2 - 24 = -22.\n<answer>-22</answer>"
    assert value == -22
    text, _ = solve("-7 + ( -9 + 2 / 2 )")
    assert text.startswith("-7 + (-9 + 2 / 2) = -7 + (-9 + 1) = -7 + -8 = -15.")
    text, _ = solve("-( 3 + 4 ) * 2")
    assert text.startswith("-(3 + 4) * 2 = -7 * 2 = -14.")


def test_parentheses_kept_where_precedence_needs_them():
    text, value = solve("10 - ( 2 + 3 ) - 1")
    assert text.startswith("10 - (2 + 3) - 1 = 10 - 5 - 1 = 5 - 1 = 4.")
    assert value == 4
    assert solve("12 / ( 2 * 3 )")[0].startswith("12 / (2 * 3) = 12 / 6 = 2.")


@pytest.mark.parametrize("expression", ["7 / 2", "5 / ( 3 - 3 )", "2 ** 3", "x + 1", "1 +"])
def test_unusable_expressions_raise(expression):
    with pytest.raises(UnusableExpression):
        solve(expression)


def test_every_step_is_true_on_random_expressions():
    rng = random.Random(0)
    for _ in range(300):
        terms = [str(rng.randint(-99, 99)) for _ in range(rng.randint(2, 5))]
        ops = [rng.choice("+-*") for _ in terms[1:]]
        expression = " ".join(t for pair in zip(terms, ops + [""]) for t in pair).strip()
        text, value = solve(expression)
        assert value == eval(expression)
        for step in text.split("\n")[0].rstrip(".").split(" = "):
            assert Fraction(eval(step)) == value, (expression, step)
