"""The CertLogic engine against its specification's own test suites, and its limits.

The specification's ``testSuite/*.json`` (evaluation) and ``validation-testSuite/*.json``
(static checks) are read from ``../shared/testdata/certlogic``; the tests skip cleanly
when that folder is absent. Cases the suite marks ``"directive": "skip"`` are kept apart
(the reference implementations skip them too) and reported as skipped, not run as
passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.rules import certlogic
from edge.rules.certlogic import CertLogicError, LimitExceeded, Limits
from edge.rules.datetimes import DateError, DateTime, date_of_birth, parse, plus

from .conftest import SHARED_TESTDATA

SUITE = SHARED_TESTDATA / "certlogic" / "testSuite"
VALIDATION = SHARED_TESTDATA / "certlogic" / "validation-testSuite"


def _same(result: Any, expected: Any) -> bool:
    if isinstance(result, DateTime):
        result = result.iso()
    if isinstance(result, bool) or isinstance(expected, bool):
        return result is expected
    return bool(result == expected)


def _assertions(suite: Path, skipped: bool) -> list[Any]:
    """One pytest param per assertion of every case of every file: those the suite
    marks ``skip`` (``skipped``) or the others."""
    if not suite.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{suite} not present"))]
    params = []
    for path in sorted(suite.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for case in doc["cases"]:
            for n, assertion in enumerate(case["assertions"]):
                expr = assertion.get("certLogicExpression", case.get("certLogicExpression"))
                directives = (
                    doc.get("directive"),
                    case.get("directive"),
                    assertion.get("directive"),
                )
                if ("skip" in directives) != skipped:
                    continue
                params.append(
                    pytest.param(
                        (expr, assertion["data"], assertion["expected"]),
                        id=f"{path.stem}:{case['name'][:50]}:{n}",
                    )
                )
    return params


@pytest.mark.parametrize("assertion", _assertions(SUITE, skipped=False))
def test_specification_test_suite(assertion: tuple[Any, Any, Any]) -> None:
    expr, data, expected = assertion
    assert _same(certlogic.evaluate(expr, data), expected)


@pytest.mark.parametrize("assertion", _assertions(SUITE, skipped=True))
def test_what_the_suite_skips_is_right_or_the_specified_error(
    assertion: tuple[Any, Any, Any],
) -> None:
    """The suite marks some assertions ``skip``: the patched ``reduce`` (which this
    engine implements) and ``in`` on a ``null`` right-hand side, which the specification
    calls an error ("operating on a non-array <operand 2> is considered an error") while
    the suite expects false. Either the expected value or that error, nothing else."""
    expr, data, expected = assertion
    if "in" in expr and not isinstance((data or {}).get("y"), list):
        with pytest.raises(CertLogicError, match="must be an array"):
            certlogic.evaluate(expr, data)
    else:
        assert _same(certlogic.evaluate(expr, data), expected)


def test_the_suite_is_really_there(shared_testdata: Path) -> None:
    """The parametrised cases above are not an empty set."""
    files = list((shared_testdata / "certlogic" / "testSuite").glob("*.json"))
    assert len(files) >= 14
    assert len(_assertions(SUITE, skipped=False)) > 200
    assert len(_assertions(SUITE, skipped=True)) == 14


def _validation_cases() -> list[Any]:
    if not VALIDATION.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{VALIDATION} not present"))]
    params = []
    for path in sorted(VALIDATION.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for n, case in enumerate(doc["cases"]):
            want = [issue["message"] for issue in case["issues"]]
            params.append(pytest.param((case["certLogicExpression"], want), id=f"{path.stem}:{n}"))
    return params


@pytest.mark.parametrize("case", _validation_cases())
def test_validation_test_suite(case: tuple[Any, list[str]]) -> None:
    expr, want = case
    assert [issue.message for issue in certlogic.validate(expr)] == want
    if want:  # an invalid expression never runs
        with pytest.raises(CertLogicError):
            certlogic.compile_expression(expr)


# -- what the suites do not pin down ----------------------------------------------------


def test_evaluation_errors_are_typed_never_python_errors() -> None:
    for expr, data in [
        ({"+": [{"var": "a"}, 1]}, {"a": "x"}),  # + on a string
        ({"plusTime": [{"var": "d"}, 1, "day"]}, {"d": "not a date"}),
        ({"dccDateOfBirth": [{"var": "d"}]}, {"d": "1990-13"}),
        ({"reduce": [{"var": "a"}, {"+": [{"var": "accumulator"}, 1]}, 0]}, {"a": 5}),
        ({"<": [{"var": "a"}, 1]}, {"a": [1]}),
        ({"after": [{"var": "a"}, {"var": "a"}]}, {"a": 3}),
    ]:
        with pytest.raises(CertLogicError):
            certlogic.evaluate(expr, data)


def test_deeply_nested_rules_are_refused_before_they_run() -> None:
    expr: Any = True
    for _ in range(200):
        expr = {"!": [expr]}
    issues = certlogic.validate(expr)
    assert issues
    assert "deep" in issues[0].message
    with pytest.raises(CertLogicError, match="deep"):
        certlogic.compile_expression(expr)
    shallow: Any = True
    for _ in range(10):
        shallow = {"!": [shallow]}
    assert certlogic.evaluate(shallow, {}) is True


def test_steps_items_and_time_are_bounded() -> None:
    fold = {
        "reduce": [
            {"var": "items"},
            {
                "reduce": [
                    {"var": "data.items"},
                    {"+": [{"var": "accumulator"}, 1]},
                    {"var": "accumulator"},
                ]
            },
            0,
        ]
    }
    data = {"items": list(range(500))}
    with pytest.raises(LimitExceeded, match="operations"):
        certlogic.evaluate(fold, data, Limits(max_steps=10_000))
    with pytest.raises(LimitExceeded, match="items"):
        certlogic.evaluate(fold, {"items": list(range(20_000))}, Limits())
    with pytest.raises(LimitExceeded, match="longer than"):
        certlogic.evaluate(fold, data, Limits(max_steps=10**9, max_seconds=0.0))
    small = {"items": list(range(20))}
    assert certlogic.evaluate(fold, small, Limits(max_steps=10_000)) == 20 * 20


def test_a_compiled_rule_runs_many_times_with_a_fresh_budget() -> None:
    compiled = certlogic.compile_expression(
        {"reduce": [{"var": "a"}, {"+": [{"var": "accumulator"}, 1]}, 0]}, Limits(max_steps=100)
    )
    for _ in range(5):
        assert compiled.evaluate({"a": list(range(20))}) == 20


def test_dates() -> None:
    assert parse("2021-06-01T12:00:00+02:00").iso() == "2021-06-01T10:00:00.000Z"
    assert parse("2021-06-01T12:00:00.123456Z").iso() == "2021-06-01T12:00:00.123Z"
    assert parse("2021-06").iso() == "2021-06-30T00:00:00.000Z"
    assert date_of_birth("2000").iso() == "2000-12-31T00:00:00.000Z"
    assert date_of_birth("2000-02").iso() == "2000-02-29T00:00:00.000Z"
    # JavaScript's setUTCFullYear: 29 February plus a year is 1 March
    assert plus(parse("2020-02-29"), 1, "year").iso() == "2021-03-01T00:00:00.000Z"
    assert plus(parse("2021-01-31T10:00:00Z"), 1, "month").iso() == "2021-03-03T10:00:00.000Z"
    assert plus(parse("2021-03-01"), -36, "hour").iso() == "2021-02-27T12:00:00.000Z"
    for bad in ["2021-02-30", "21-01-01", "2021-06-01T25:00:00Z", "", "2021-6-1"]:
        with pytest.raises(DateError):
            parse(bad)
    with pytest.raises(DateError):
        plus(parse("9999-12-31"), 1, "year")


# -- hostile rules and data: only CertLogicError ever comes out --------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPERATOR = st.sampled_from([*sorted(certlogic.OPERATORS), "var", "merge", "map", "bogus"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["2021-06-01", "2021-06-01T00:00:00Z", "1990-02", "day", "hour", "x.y"])
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)
expressions = st.recursive(
    json_values,
    lambda inner: st.builds(
        lambda op, args: {op: args}, OPERATOR, st.lists(inner, max_size=4) | inner
    ),
    max_leaves=30,
)


@FUZZ
@given(expressions, json_values)
def test_hostile_rules_and_data_never_raise_anything_else(expr: Any, data: Any) -> None:
    try:
        issues = certlogic.validate(expr)
    except RecursionError:  # pragma: no cover - a bug
        pytest.fail("validation recursed without bound")
    try:
        result = certlogic.evaluate(expr, data, Limits(max_seconds=1.0))
    except CertLogicError:
        return
    assert not issues  # what validation refuses never evaluates
    json.dumps(result.iso() if isinstance(result, DateTime) else result)


@FUZZ
@given(json_values)
def test_hostile_payloads_against_a_real_rule(payload: Any) -> None:
    rule = {
        "if": [
            {"var": "payload.v.0"},
            {
                "not-before": [
                    {"plusTime": [{"var": "external.validationClock"}, 0, "day"]},
                    {"plusTime": [{"var": "payload.v.0.dt"}, 14, "day"]},
                ]
            },
            {"in": [{"var": "payload.t.0.tt"}, ["LP6464-4", "LP217198-3"]]},
        ]
    }
    data = {
        "payload": {"v": [payload], "t": payload},
        "external": {"validationClock": "2021-06-01"},
    }
    try:
        result = certlogic.evaluate(rule, data)
    except CertLogicError:
        return
    assert isinstance(result, bool)
