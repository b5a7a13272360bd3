"""What a table's CHECK constraints ask of a column, for the values a test row makes up.

The row builder (runbook_lib.batch.rowbuilder) makes a value up from the column's type; a CHECK such as
status IN ('a', 'b') or qty > 0 would refuse most of them, and the behaviour test would then prove nothing
about the constraint it is about. So the builder reads each CHECK (pg_get_constraintdef, parsed with
pglast) and keeps, per column, what the simple forms say, one conjunct (AND) at a time:

- col = ANY (ARRAY[...]), col IN (...), col = constant: the allowed values;
- col >, >=, <, <= a numeric constant (either side), col BETWEEN a AND b: a lower and an upper bound;
- char_length(col), character_length(col), length(col) compared with a constant: the length limits.

Anything else (OR, a comparison with another column, a function of several columns) is left alone: the
server may still refuse the row, and the test then reports itself not run, with the server's message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from pglast import ast
from pglast.enums import A_Expr_Kind, BoolExprType
from pglast.parser import ParseError, parse_sql

_FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "="}
_LENGTHS = {"char_length", "character_length", "length"}
# what an expression's operand field holds: a node, a list (IN's values, BETWEEN's bounds), or nothing
_Operand = ast.Node | tuple[Any, ...] | None


@dataclass(frozen=True)
class Bound:
    value: Decimal
    inclusive: bool


@dataclass(frozen=True)
class ColumnRule:
    """What the CHECK constraints read allow one column's value to be (None: nothing said)."""

    allowed: tuple[str, ...] | None = None  # the constants' text, as the definition writes them
    lower: Bound | None = None
    upper: Bound | None = None
    min_length: int | None = None
    max_length: int | None = None

    def __and__(self, other: ColumnRule) -> ColumnRule:
        allowed = self.allowed
        if other.allowed is not None:
            both = tuple(v for v in (allowed or other.allowed) if v in other.allowed)
            allowed = both or (allowed or other.allowed)
        return ColumnRule(
            allowed,
            _tighter(self.lower, other.lower, higher=True),
            _tighter(self.upper, other.upper, higher=False),
            max(filter(None, (self.min_length, other.min_length)), default=None),
            min(filter(None, (self.max_length, other.max_length)), default=None),
        )

    def integer_range(self) -> tuple[int | None, int | None]:
        """The smallest and largest integer the bounds allow (None: unbounded on that side)."""
        low = high = None
        if self.lower is not None:
            low = int(self.lower.value.to_integral_value(rounding="ROUND_FLOOR")) + 1
            if self.lower.inclusive and self.lower.value == int(self.lower.value):
                low -= 1
        if self.upper is not None:
            high = int(self.upper.value.to_integral_value(rounding="ROUND_CEILING")) - 1
            if self.upper.inclusive and self.upper.value == int(self.upper.value):
                high += 1
        return low, high


def _tighter(a: Bound | None, b: Bound | None, *, higher: bool) -> Bound | None:
    if a is None or b is None:
        return a or b
    if a.value != b.value:
        return a if (a.value > b.value) == higher else b
    return a if not a.inclusive else b


def read(definitions: list[str]) -> dict[str, ColumnRule]:
    """Per column, what the CHECK definitions (pg_get_constraintdef) say in the forms listed above."""
    rules: dict[str, ColumnRule] = {}
    for definition in definitions:
        for column, rule in _rules_of(definition):
            rules[column] = rules[column] & rule if column in rules else rule
    return rules


def _rules_of(definition: str) -> list[tuple[str, ColumnRule]]:
    try:
        statement = parse_sql("ALTER TABLE runbook_check ADD " + definition)[0].stmt
        if not isinstance(statement, ast.AlterTableStmt) or not statement.cmds:
            return []  # not ALTER TABLE ... ADD something: not a constraint's definition
        expression = statement.cmds[0].def_.raw_expr
    except (ParseError, AttributeError, IndexError):
        return []
    found = []
    for conjunct in _conjuncts(expression):
        rule = _rule(conjunct)
        if rule is not None:
            found.append(rule)
    return found


def _conjuncts(node: ast.Node | None) -> list[ast.Node | None]:
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        return [part for arg in node.args or () for part in _conjuncts(arg)]
    return [node]


def _strip(node: _Operand) -> _Operand:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node


def _column(node: _Operand) -> str | None:
    node = _strip(node)
    if (
        isinstance(node, ast.ColumnRef)
        and node.fields is not None
        and len(node.fields) == 1
        and isinstance(node.fields[0], ast.String)
    ):
        return node.fields[0].sval
    return None


def _constant(node: _Operand) -> str | None:
    node = _strip(node)
    if isinstance(node, ast.A_Const) and not node.isnull:
        value = node.val
        if isinstance(value, ast.Integer):
            return str(value.ival)
        if isinstance(value, ast.Float):
            return value.fval
        if isinstance(value, ast.String):
            return value.sval
        if isinstance(value, ast.Boolean):
            return "true" if value.boolval else "false"
    return None


def _constants(nodes: Iterable[Any]) -> tuple[str, ...] | None:
    """Every node's constant text, in order; None when one of them is not a constant."""
    values = [_constant(node) for node in nodes]
    found = tuple(v for v in values if v is not None)
    return found if len(found) == len(values) else None


def _number(text: str | None) -> Decimal | None:
    try:
        return Decimal(text) if text is not None else None
    except InvalidOperation:
        return None


def _length_of(node: _Operand) -> str | None:
    """The column whose length `node` measures (char_length(col), length(col)), else None."""
    node = _strip(node)
    if isinstance(node, ast.FuncCall) and node.args and len(node.args) == 1:
        name = node.funcname[-1].sval if node.funcname else ""
        if name in _LENGTHS:
            return _column(node.args[0])
    return None


def _rule(node: ast.Node | None) -> tuple[str, ColumnRule] | None:
    if not isinstance(node, ast.A_Expr):
        return None
    kind = node.kind
    op = node.name[-1].sval if node.name else ""
    if kind == A_Expr_Kind.AEXPR_OP_ANY and op == "=":
        column, array = _column(node.lexpr), _strip(node.rexpr)
        if column and isinstance(array, ast.A_ArrayExpr) and array.elements:
            allowed = _constants(array.elements)
            return (column, ColumnRule(allowed=allowed)) if allowed is not None else None
        return None
    if kind == A_Expr_Kind.AEXPR_IN and op == "=":
        column, allowed = _column(node.lexpr), _constants(node.rexpr or ())
        return (column, ColumnRule(allowed=allowed)) if column and allowed else None
    if kind == A_Expr_Kind.AEXPR_BETWEEN:
        column = _column(node.lexpr)
        if not isinstance(node.rexpr, tuple):  # BETWEEN's rexpr is always the list of its two bounds
            return None
        low, high = (_number(_constant(e)) for e in node.rexpr)
        if column and low is not None and high is not None:
            return column, ColumnRule(lower=Bound(low, True), upper=Bound(high, True))
        return None
    if kind != A_Expr_Kind.AEXPR_OP or op not in _FLIPPED:
        return None
    left: _Operand = node.lexpr
    right: _Operand = node.rexpr
    if _constant(left) is not None:  # 0 < qty reads as qty > 0
        left, right, op = right, left, _FLIPPED[op]
    return _comparison(left, op, _constant(right))


def _comparison(left: _Operand, op: str, constant: str | None) -> tuple[str, ColumnRule] | None:
    if constant is None:
        return None
    column, measured = _column(left), _length_of(left)
    if column:
        if op == "=":
            return column, ColumnRule(allowed=(constant,))
        value = _number(constant)
        if value is None:
            return None
        bound = Bound(value, op.endswith("="))
        return column, (ColumnRule(lower=bound) if op.startswith(">") else ColumnRule(upper=bound))
    length = _number(constant)
    if measured and length is not None:
        rule = ColumnRule()
        exact = int(length)
        if op in ("<", "<=", "="):
            rule = replace(rule, max_length=exact - (op == "<"))
        if op in (">", ">=", "="):
            rule = replace(rule, min_length=exact + (op == ">"))
        return measured, rule
    return None
