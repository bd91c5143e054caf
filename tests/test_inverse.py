"""Solving the step's maxima: the closed form, the search and SymPy substitution agree."""

from __future__ import annotations

from fractions import Fraction
from functools import cache

import pytest
import sympy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from symmem import BudgetError, Config, KernelError, build_report
from symmem.inverse import BUDGET, piece_largest
from symmem.solve import SOLVABLE, largest, quantity_expr

KERNELS = [("cuda", "efficient"), ("cuda", "math"), ("cpu", "default"), ("cpu", "math")]
QUANTITIES = ["peak", "max_memory_allocated", "total", "activations+peak"]


@cache
def _expr(kernel: tuple[str, str], quantity: str) -> sympy.Expr:
    return quantity_expr(build_report(*kernel), quantity)


def exact(kernel, config, quantity):
    """The quantity by SymPy substitution: no generated code involved."""
    return int(_expr(kernel, quantity).xreplace(config.values()))


def searched(kernel, config, quantity, symbol, budget, k):
    """The largest multiple of k that fits, by doubling and bisecting over ``exact``."""

    def fits(m):
        return exact(kernel, config.with_(**{symbol: m * k}), quantity) <= budget

    low, high = 1, 2
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low * k


@pytest.mark.slow  # each switch combination, quantity and size solved builds a cache entry
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kernel=st.sampled_from(KERNELS),
    symbol=st.sampled_from(SOLVABLE),
    B=st.integers(1, 64),
    S=st.integers(1, 4096),
    head=st.integers(1, 128),
    NH=st.integers(1, 32),
    V=st.integers(2, 100_000),
    L=st.integers(1, 96),
    amp=st.booleans(),
    dropout=st.booleans(),
    bias=st.booleans(),
    multiple=st.sampled_from([1, 1, 3, 8]),
    scale=st.floats(0.6, 30),
    quantity=st.sampled_from(QUANTITIES),
)
@example(  # L = 1: the S^2 coefficient of some pieces vanishes
    kernel=("cuda", "math"),
    symbol="S",
    B=1,
    S=1,
    head=1,
    NH=1,
    V=2,
    L=1,
    amp=False,
    dropout=False,
    bias=False,
    multiple=3,
    scale=2.0,
    quantity="peak",
)
def test_solve_agrees_with_substitution(
    kernel, symbol, B, S, head, NH, V, L, amp, dropout, bias, multiple, scale, quantity
):
    report = build_report(*kernel)
    sizes = {"B": B, "S": S, "D": head * NH, "NH": NH, "V": V, "L": L}
    config = Config(**sizes, amp=amp, dropout=dropout, bias=bias)
    try:
        report.kernel_for(config)
    except KernelError:
        return
    budget = int(exact(kernel, config, quantity) * scale)
    partial = config.with_(**{symbol: None})
    try:
        solution = largest(report, partial, symbol, budget, multiple_of=multiple, quantity=quantity)
    except BudgetError:
        assert exact(kernel, config.with_(**{symbol: multiple}), quantity) > budget
        return
    assert solution.value == searched(kernel, config, quantity, symbol, budget, multiple)
    at_value = exact(kernel, config.with_(**{symbol: solution.value}), quantity)
    assert solution.bytes_at_value == at_value <= budget
    assert solution.bytes_at_next > budget
    if solution.closed_form is None:
        return
    # The closed form, substituted by SymPy, gives the answer (past B's size case B = 1).
    assert solution.closed_form_text == str(solution.closed_form)
    if symbol != "B" or solution.value >= 2 * multiple:
        values = {**partial.values(), BUDGET: sympy.Integer(budget)}
        form = solution.closed_form
        # For multiples of k the form is k*floor(inner/k); the inner form is a Min or one piece.
        inner = form.args[1].args[0] * multiple if multiple > 1 else form
        pieces = inner.args if isinstance(inner, sympy.Min) else (inner,)
        with sympy.evaluate(False):
            at_pieces = [p.xreplace(values) for p in pieces]
        # A piece that does not depend on the size at this config (x/0) bounds nothing here.
        finite = [v.doit() for v in at_pieces]
        finite = [v for v in finite if v.is_Integer]
        value = multiple * (min(finite) // multiple)
        assert value == solution.value == solution.closed_form_value


@pytest.mark.parametrize(
    ("kernel", "symbol", "config"),
    [
        (("cuda", "efficient"), "B", Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)),
        (("cuda", "efficient"), "L", Config(B=8, S=1024, D=768, NH=12, V=50257, amp=True)),
        (("cuda", "math"), "S", Config(B=8, D=1024, NH=16, V=50257, L=24, amp=True)),
    ],
)
def test_the_peak_has_a_closed_form_as_a_min(kernel, symbol, config):
    solution = largest(build_report(*kernel), config, symbol, "40GiB", quantity="peak")
    assert isinstance(solution.closed_form, sympy.Min)
    assert solution.closed_form_latex is not None
    assert solution.closed_form_latex.startswith(r"\min\left(")
    assert solution.closed_form_value == solution.value
    if symbol == "S":  # the math path's S^2: a quadratic's root
        assert solution.closed_form.has(sympy.sqrt(sympy.Symbol("x")).func)


def test_allocated_has_no_closed_form_and_solves_exactly():
    config = Config(S=1024, D=768, NH=12, V=50257, L=12, amp=True)
    solution = largest(build_report("cuda", "efficient"), config, "B", "80GiB")
    assert solution.closed_form is None and solution.closed_form_latex is None
    assert solution.value == searched(
        ("cuda", "efficient"), config, "max_memory_allocated", "B", 80 * 2**30, 1
    )


@settings(max_examples=500, deadline=None)
@given(
    c0=st.integers(0, 10**12),
    c1=st.fractions(0, 10**6),
    c2=st.fractions(0, 10**4),
    budget=st.integers(0, 10**15),
)
def test_piece_largest_is_the_largest_that_fits(c0, c1, c2, budget):
    coeffs = [c0, c1, c2]
    found = piece_largest(coeffs, budget)

    def fits(x):
        return c0 + c1 * x + c2 * x * x <= budget

    if c1 == 0 and c2 == 0:
        assert found is None if fits(0) else found == -1
        return
    assert found is not None
    assert (found == -1 and not fits(0)) or (fits(found) and not fits(found + 1))
    assert isinstance(found, int) and not isinstance(found, Fraction)
