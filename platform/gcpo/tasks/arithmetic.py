"""Worked solutions for arithmetic expressions, generated programmatically. Pure.

`solve(expression)` rewrites the expression one operation at a time, in the order Python evaluates it
(precedence, then left to right), and writes the chain of rewrites:

    2 - -3 * -8 = 2 - 24 = -22.
    <answer>-22</answer>

For two terms this is exactly `<expression> = <value>.\n<answer><value></answer>`, the golden-answer form seen to
teach the model fast (docs/tasks.md, "Golden answers"). Choices:
- `/` is exact division. reasoning-gym evaluates `/` as floor division (`//`); an expression with a division that
  leaves a remainder (or divides by zero) raises `UnusableExpression`, and the task drops that item, so every
  reference answer is the true value of its question.
- A negative literal (`-5`) is one number; a negated group `-( ... )` is folded as soon as its inside is a number.
- The expression is re-printed with the minimal parentheses and single spaces (`( -9 / 9 )` -> `-9 / 9`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from fractions import Fraction

from gcpo.tasks.answers import tagged


class UnusableExpression(ArithmeticError):
    """The expression has an inexact division or a division by zero, or is not plain integer arithmetic."""


@dataclass(frozen=True)
class Num:
    value: int


@dataclass(frozen=True)
class Bin:
    op: str  # one of + - * /
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Neg:
    inner: "Node"


Node = Num | Bin | Neg

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "/"}
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def parse(expression: str) -> Node:
    """Parse integer arithmetic with + - * / (or //), unary minus and parentheses; else UnusableExpression."""
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as e:
        raise UnusableExpression(f"not an arithmetic expression: {expression!r}") from e
    return _convert(tree, expression)


def _convert(node: ast.AST, source: str) -> Node:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Num(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _convert(node.operand, source)
        return Num(-inner.value) if isinstance(inner, Num) else Neg(inner)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return Bin(_OPS[type(node.op)], _convert(node.left, source), _convert(node.right, source))
    raise UnusableExpression(f"unsupported syntax in {source!r}: {ast.dump(node)[:60]}")


def _apply(op: str, a: int, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise UnusableExpression("division by zero")
    q = Fraction(a, b)
    if q.denominator != 1:
        raise UnusableExpression(f"{a} / {b} is not a whole number")
    return int(q)


def step(node: Node) -> Node:
    """Perform the first operation Python would evaluate (post-order, left first); a Num is returned as is."""
    if isinstance(node, Num):
        return node
    if isinstance(node, Neg):
        inner = step(node.inner)
        return Num(-inner.value) if isinstance(inner, Num) else Neg(inner)
    if not isinstance(node.left, Num):
        return Bin(node.op, step(node.left), node.right)
    if not isinstance(node.right, Num):
        return Bin(node.op, node.left, step(node.right))
    return Num(_apply(node.op, node.left.value, node.right.value))


def render(node: Node) -> str:
    """Print with single spaces and only the parentheses precedence needs (operators are left-associative)."""
    if isinstance(node, Num):
        return str(node.value)
    if isinstance(node, Neg):
        return f"-({render(node.inner)})"
    prec = _PREC[node.op]
    left = render(node.left)
    if isinstance(node.left, Bin) and _PREC[node.left.op] < prec:
        left = f"({left})"
    right = render(node.right)
    if isinstance(node.right, Bin) and _PREC[node.right.op] <= prec:
        right = f"({right})"
    return f"{left} {node.op} {right}"


def solve(expression: str) -> tuple[str, int]:
    """(worked solution in the policy's response format, value). See the module docstring for the format."""
    node = parse(expression)
    chain = [render(node)]
    while not isinstance(node, Num):
        node = step(node)
        chain.append(render(node))
    if len(chain) == 1:  # a bare number: nothing to compute
        chain.append(chain[0])
    return f"{' = '.join(chain)}.\n{tagged(str(node.value))}", node.value
