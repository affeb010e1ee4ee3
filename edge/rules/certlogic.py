"""CertLogic (specification 1.3.3): the JsonLogic subset the DCC world writes its
business rules in, implemented from ``certlogic/README.md`` of the EU's
``eu-dcc-business-rules``.

- :func:`validate` checks an expression's form and lists every issue, worded as
  the specification's validation test suite words them.
- :func:`compile_expression` validates once and turns the expression into a
  Python closure; :meth:`Compiled.evaluate` runs it on a data context. A rule
  set is compiled when it is loaded and evaluated for every DCC.
- :func:`evaluate` is both in one call.

Evaluation never raises anything but :class:`CertLogicError`: an operation on
values it does not take (comparing a string with an integer, ``plusTime`` on
what is not a date) is an error, as the specification says, and so is running
past the :class:`Limits` (nesting depth, operations evaluated, items reduced,
time). A hostile rule or payload cannot exhaust the kiosk.

Values: JSON values, and :class:`~edge.rules.datetimes.DateTime` (made only by
``plusTime`` and ``dccDateOfBirth``). Truthy and falsy are disjoint and do not
cover everything: a date-time, for one, is neither, and using it as a guard is
an error. ``reduce`` gives its lambda ``accumulator``, ``current`` and ``data``
(the original context: the specification's permitted extension).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.errors import EdgeError
from edge.rules import datetimes
from edge.rules.datetimes import DateError, DateTime
from edge.rules.values import access, boolsiness, extract_from_uvci, is_int, strict_equal

SPECIFICATION_VERSION = "1.3.3"
INFIX = frozenset({"===", "and", ">", "<", ">=", "<=", "in", "+", "after", "before",
                   "not-after", "not-before"})  # fmt: skip
COMPARISONS = {">": "gt", "<": "lt", ">=": "ge", "<=": "le"}
DATE_COMPARISONS = {"after": "gt", "before": "lt", "not-after": "le", "not-before": "ge"}
OPERATORS = INFIX | {"if", "reduce", "!", "plusTime", "extractFromUVCI", "dccDateOfBirth"}
_PATH = re.compile(r"([^.]+?)(\.[^.]+?)*")


class CertLogicError(EdgeError, ValueError):
    """An expression that is not valid CertLogic, or that cannot be evaluated on these
    values (the specification's "throws an error")."""


class LimitExceeded(CertLogicError):
    """Evaluation ran past :class:`Limits`: a hostile or broken rule."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one evaluation: how deep expressions nest (also checked when
    compiling), how many operations run, how many items ``reduce`` folds, how
    long it may take (seconds)."""

    max_depth: int = 64
    max_steps: int = 100_000
    max_items: int = 10_000
    max_seconds: float = 0.25


@dataclass(frozen=True)
class Issue:
    """One problem :func:`validate` found: the (sub)expression and what is wrong."""

    expr: Any
    message: str


# -- validation ----------------------------------------------------------------------------


def validate(expr: Any) -> list[Issue]:
    """Every issue with the form of ``expr`` (empty: valid CertLogic)."""
    return _Validator(Limits().max_depth).check(expr, 0)


class _Validator:
    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth

    def check(self, expr: Any, depth: int) -> list[Issue]:  # noqa: PLR0911 - a return per form
        if depth > self.max_depth:
            return [Issue(expr, f"nested deeper than {self.max_depth} levels")]
        if isinstance(expr, str | bool) or is_int(expr):
            return []
        if isinstance(expr, float):
            return [Issue(expr, f"{_js(expr)} is a non-integer number")]
        if expr is None:
            return [Issue(expr, "invalid CertLogic expression")]
        if isinstance(expr, list):
            return [i for item in expr for i in self.check(item, depth + 1)]
        if not isinstance(expr, dict):
            return [Issue(expr, "invalid CertLogic expression")]
        if len(expr) != 1:
            return [
                Issue(expr, f"expression object must have exactly one key, but it has {len(expr)}")
            ]
        ((operator, values),) = expr.items()
        if operator == "var":
            return self._var(expr, values)
        if not isinstance(values, list):
            return [Issue(expr, 'operation not of the form { "<operator>": [ <values...> ] }')]
        checked = values[: _checked_operands(str(operator), len(values))]
        operands = [i for v in checked for i in self.check(v, depth + 1)]
        return self._operation(expr, str(operator), values) + operands

    @staticmethod
    def _var(expr: Any, path: Any) -> list[Issue]:
        if not isinstance(path, str):
            return [Issue(expr, 'not of the form { "var": "<path>" }')]
        if path and not _PATH.fullmatch(path):
            return [Issue(expr, f"data access path doesn't have a valid format: {path}")]
        return []

    @staticmethod
    def _operation(expr: Any, operator: str, values: list[Any]) -> list[Issue]:
        problems = _arity_problem(operator, len(values))
        if operator == "plusTime":
            problems += _plus_time_problems(values)
        elif operator == "extractFromUVCI" and len(values) > 1 and not is_int(values[1]):
            problems.append(
                '"index" argument (#2) of "extractFromUVCI" must be an integer, '
                f"but it is: {_js(values[1])}"
            )
        elif operator not in OPERATORS:
            problems = [f'unrecognised operator: "{operator}"']
        return [Issue(expr, p) for p in problems]


def _arity_problem(operator: str, n: int) -> list[str]:
    """The issue with the number of operands of ``operator``, if any (the wording of the
    specification's validator)."""
    exactly = {"if": 3, "reduce": 3, "plusTime": 3, "extractFromUVCI": 2, "dccDateOfBirth": 1}
    if operator in exactly and n != exactly[operator]:
        article = "an" if operator in ("if", "extractFromUVCI") else "a"
        return [
            f'{article} "{operator}"-operation must have exactly {exactly[operator]} '
            f"values/operands, but it has {n}"
        ]
    if operator == "and" and n < 2:
        return [f'an "and" operation must have at least 2 operands, but it has {n}']
    if (operator in COMPARISONS or operator in DATE_COMPARISONS) and not 2 <= n <= 3:
        return [
            f'an operation with operator "{operator}" must have 2 or 3 operands, but it has {n}'
        ]
    if operator in ("===", "in", "+") and n != 2:
        return [f'an operation with operator "{operator}" must have 2 operands, but it has {n}']
    if operator == "!" and n != 1:
        return [f"a !-operation (logical not/negation) must have exactly 1 operand, but it has {n}"]
    return []


def _plus_time_problems(values: list[Any]) -> list[str]:
    problems = []
    if len(values) > 1 and not is_int(values[1]):
        problems.append(
            f'"amount" argument (#2) of "plusTime" must be an integer, but it is: {_js(values[1])}'
        )
    if len(values) > 2 and values[2] not in datetimes.TIME_UNITS:
        units = ", ".join(datetimes.TIME_UNITS)
        problems.append(
            f'"unit" argument (#3) of "plusTime" must be a string equal to one of {units}, '
            f"but it is: {_js(values[2])}"
        )
    return problems


def _checked_operands(operator: str, n: int) -> int:
    """How many of an operation's operands are expressions to check in turn (as the
    specification's validator: none of an unknown operation's, the literal amount
    and unit of ``plusTime`` and index of ``extractFromUVCI`` apart)."""
    if operator in ("plusTime", "extractFromUVCI", "dccDateOfBirth"):
        return 1
    if operator == "!":
        return 1 if n == 1 else 0
    if operator in ("if", "reduce") or operator in COMPARISONS or operator in DATE_COMPARISONS:
        return 3
    if operator in ("===", "in", "+"):
        return 2
    return n if operator == "and" else 0


def _js(value: Any) -> str:
    """A value as JavaScript's template strings write it (for issue messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- compiling and evaluating ------------------------------------------------------------

Node = Callable[["_Run", Any], Any]


@dataclass
class _Run:
    """One evaluation's budget."""

    limits: Limits
    deadline: float
    steps: int = 0

    def step(self, count: int = 1) -> None:
        """``count`` more operations (a list literal's items, a reduce's fold); past the
        step budget or the deadline: LimitExceeded."""
        self.steps += count
        if self.steps > self.limits.max_steps:
            raise LimitExceeded(f"more than {self.limits.max_steps} operations")
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"longer than {self.limits.max_seconds} s")


@dataclass(frozen=True)
class Compiled:
    """A validated expression, ready to evaluate on any data."""

    expression: Any = field(repr=False)
    node: Node = field(repr=False)
    limits: Limits = Limits()

    def evaluate(self, data: Any) -> Any:
        run = _Run(self.limits, time.monotonic() + self.limits.max_seconds)
        try:
            return self.node(run, data)
        except RecursionError as exc:
            raise LimitExceeded("nested too deep") from exc
        except CertLogicError:
            raise
        except DateError as exc:
            raise CertLogicError(str(exc)) from exc
        except (ArithmeticError, ValueError, TypeError, LookupError, MemoryError) as exc:
            # whatever the data held, an evaluation fails only as CertLogic fails
            raise CertLogicError(f"cannot be evaluated ({type(exc).__name__})") from exc


def evaluate(expr: Any, data: Any, limits: Limits = Limits()) -> Any:
    """Validate and evaluate ``expr`` on ``data``; :class:`CertLogicError` on any problem."""
    return compile_expression(expr, limits).evaluate(data)


def compile_expression(expr: Any, limits: Limits = Limits()) -> Compiled:
    """``expr`` validated (all issues or none) and compiled."""
    issues = _Validator(limits.max_depth).check(expr, 0)
    if issues:
        raise CertLogicError("; ".join(i.message for i in issues[:5]))
    return Compiled(expr, _compile(expr), limits)


def _compile(expr: Any) -> Node:  # noqa: PLR0911 - a return per form
    if isinstance(expr, str | bool) or is_int(expr):
        value = int(expr) if isinstance(expr, float) else expr
        return lambda _run, _data: value
    if isinstance(expr, list):
        items = [_compile(item) for item in expr]

        def array(run: _Run, data: Any) -> list[Any]:
            run.step(len(items) + 1)  # a literal of 20,000 items costs its size
            return [item(run, data) for item in items]

        return array
    ((operator, values),) = expr.items()
    if operator == "var":
        path = values

        def var(run: _Run, data: Any) -> Any:
            run.step()
            return access(data, path)

        return var
    if operator == "if":
        return _if(*(_compile(v) for v in values))
    if operator == "and":
        return _and([_compile(v) for v in values])
    if operator == "!":
        return _not(_compile(values[0]))
    if operator == "plusTime":
        return _plus_time(_compile(values[0]), int(values[1]), values[2])
    if operator == "dccDateOfBirth":
        return _date_of_birth(_compile(values[0]))
    if operator == "reduce":
        return _reduce(*(_compile(v) for v in values))
    if operator == "extractFromUVCI":
        return _extract(_compile(values[0]), int(values[1]))
    return _infix(operator, [_compile(v) for v in values])


def _if(guard: Node, then: Node, else_: Node) -> Node:
    def node(run: _Run, data: Any) -> Any:
        run.step()
        value = guard(run, data)
        match boolsiness(value):
            case True:
                return then(run, data)
            case False:
                return else_(run, data)
        raise CertLogicError("if-guard evaluates to something neither truthy, nor falsy")

    return node


def _and(operands: list[Node]) -> Node:
    def node(run: _Run, data: Any) -> Any:
        run.step()
        value: Any = True
        for operand in operands:  # lazily: up to the first falsy value
            match boolsiness(value):
                case False:
                    return value
                case None:
                    raise CertLogicError(
                        'all operands of an "and" operation must be either truthy or falsy'
                    )
            value = operand(run, data)
        if boolsiness(value) is None:
            raise CertLogicError(
                'all operands of an "and" operation must be either truthy or falsy'
            )
        return value

    return node


def _not(operand: Node) -> Node:
    def node(run: _Run, data: Any) -> Any:
        run.step()
        value = boolsiness(operand(run, data))
        if value is None:
            raise CertLogicError("operand of ! evaluates to something neither truthy, nor falsy")
        return not value

    return node


def _plus_time(operand: Node, amount: int, unit: str) -> Node:
    def node(run: _Run, data: Any) -> Any:
        run.step()
        text = operand(run, data)
        if not isinstance(text, str):
            raise CertLogicError('date argument of "plusTime" must be a string')
        return datetimes.plus(datetimes.parse(text), amount, unit)

    return node


def _date_of_birth(operand: Node) -> Node:
    def node(run: _Run, data: Any) -> Any:
        run.step()
        text = operand(run, data)
        if not isinstance(text, str):
            raise CertLogicError('argument of "dccDateOfBirth" must be a string')
        return datetimes.date_of_birth(text)

    return node


def _reduce(operand: Node, lam: Node, initial: Node) -> Node:
    def node(run: _Run, data: Any) -> Any:
        run.step()
        items = operand(run, data)
        accumulator = initial(run, data)
        if items is None:
            return accumulator
        if not isinstance(items, list):
            raise CertLogicError("operand of reduce evaluated to a non-null non-array")
        if len(items) > run.limits.max_items:
            raise LimitExceeded(f"reduce over more than {run.limits.max_items} items")
        for current in items:
            run.step()
            context = {"accumulator": accumulator, "current": current, "data": data}
            accumulator = lam(run, context)
        return accumulator

    return node


def _extract(operand: Node, index: int) -> Node:
    def node(run: _Run, data: Any) -> Any:
        run.step()
        uvci = operand(run, data)
        if uvci is not None and not isinstance(uvci, str):
            raise CertLogicError(
                '"UVCI" argument (#1) of "extractFromUVCI" must be a string or null'
            )
        return extract_from_uvci(uvci, index)

    return node


def _infix(operator: str, operands: list[Node]) -> Node:
    def node(run: _Run, data: Any) -> Any:
        run.step()
        values = [operand(run, data) for operand in operands]
        return _apply(operator, values)

    return node


def _apply(operator: str, values: list[Any]) -> Any:
    if operator == "===":
        return strict_equal(values[0], values[1])
    if operator == "in":
        if not isinstance(values[1], list):
            raise CertLogicError('right-hand side of an "in" operation must be an array')
        return any(strict_equal(values[0], item) for item in values[1])
    if operator == "+":
        if not (is_int(values[0]) and is_int(values[1])):
            raise CertLogicError("operands of this operation must both be integers")
        return int(values[0]) + int(values[1])
    if operator in COMPARISONS:
        if not all(is_int(v) for v in values):
            raise CertLogicError("all operands of a comparison operation must be of integer type")
        return _compare(COMPARISONS[operator], values)
    if not all(isinstance(v, DateTime) for v in values):
        raise CertLogicError("all operands of a date-time comparison must be date-times")
    return _compare(DATE_COMPARISONS[operator], values)


def _compare(how: str, values: list[Any]) -> bool:
    test: Callable[[Any, Any], bool] = {
        "gt": lambda a, b: a > b,
        "lt": lambda a, b: a < b,
        "ge": lambda a, b: a >= b,
        "le": lambda a, b: a <= b,
    }[how]
    return all(test(a, b) for a, b in itertools.pairwise(values))
