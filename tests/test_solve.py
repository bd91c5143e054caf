"""Inverse sizing: the answer fits, the next allowed value does not, the closed form agrees."""

from __future__ import annotations

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symmem import BudgetError, Config, ConfigError, KernelError, build_report
from symmem.solve import SOLVABLE, largest, quantity_expr
from symmem.symbols import SYMBOLS
from symmem.units import parse_bytes

KERNELS = [
    ("cuda", "efficient"),
    ("cuda", "math"),
    ("cuda", "flash"),
    ("cuda", "cudnn"),
    ("cpu", "default"),
    ("cpu", "math"),
    ("cpu", "flash"),
]


def exact(report, config, quantity, symbol, value):
    """Memory at ``symbol = value`` by plain SymPy substitution (independent of the solver)."""
    values = config.with_(**{symbol: value}).values()
    return int(quantity_expr(report, quantity).xreplace(values))


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
    multiple=st.sampled_from([1, 1, 2, 8, 64]),
    scale=st.floats(0.5, 40),
    quantity=st.sampled_from(["total", "total", "activations+loss", "activations"]),
)
def test_answer_fits_and_next_does_not(
    kernel, symbol, B, S, head, NH, V, L, amp, dropout, bias, multiple, scale, quantity
):
    report = build_report(*kernel)
    sizes = {"B": B, "S": S, "D": head * NH, "NH": NH, "V": V, "L": L}
    config = Config(**sizes, amp=amp, dropout=dropout, bias=bias)
    try:
        report.kernel_for(config)
    except KernelError:
        return
    partial = config.with_(**{symbol: None})
    budget = int(exact(report, config, quantity, symbol, sizes[symbol]) * scale)
    try:
        solution = largest(report, partial, symbol, budget, multiple_of=multiple, quantity=quantity)
    except BudgetError as error:
        assert exact(report, config, quantity, symbol, multiple) > budget, str(error)
        return
    value = solution.value
    assert value % multiple == 0 and value >= multiple
    assert solution.bytes_at_value == exact(report, config, quantity, symbol, value) <= budget
    assert solution.bytes_at_next == exact(report, config, quantity, symbol, value + multiple)
    assert solution.bytes_at_next > budget
    if solution.closed_form is not None:
        generic = value >= 2 * multiple if symbol == "B" else True
        if generic:
            at_config = solution.closed_form.xreplace(
                {**partial.values(), sympy.Symbol("M", positive=True): budget}
            ).doit()
            assert at_config == value == solution.closed_form_value


def test_gpt2_xl_on_80_gib_matches_a_linear_scan():
    report = build_report("cuda")
    base = Config(S=1024, D=1600, NH=25, V=50257, L=48)
    for amp in (False, True):
        config = base.with_(amp=amp)
        solution = largest(report, config, "B", "80GiB")
        fits = [b for b in range(1, 200) if exact(report, config, "peak", "B", b) <= 80 * 2**30]
        assert solution.value == max(fits)


def test_multiple_of_and_upper_bound():
    report = build_report("cuda", "math")
    config = Config(B=4, D=256, NH=4, V=5000, L=4, amp=True)
    free = largest(report, config, "S", "20GB", multiple_of=64)
    assert free.value % 64 == 0 and free.limited_by == "budget"
    bounded = largest(report, config, "S", "20GB", multiple_of=64, upper=free.value - 100)
    assert bounded.value == (free.value - 100) // 64 * 64
    assert bounded.limited_by == "upper bound"
    assert bounded.bytes_at_next <= bounded.budget_bytes  # the bound, not the budget, stopped it


def test_padded_length_has_no_closed_form_but_an_exact_answer():
    report = build_report("cuda", "efficient")
    solution = largest(report, Config(B=8, D=768, NH=12, V=50257, L=12, amp=True), "S", "40GB")
    assert solution.closed_form is None and solution.closed_form_value is None
    assert solution.bytes_at_value <= 40 * 10**9 < solution.bytes_at_next


def test_closed_form_for_batch_is_a_floor_of_a_ratio_and_renders():
    solution = largest(
        build_report("cuda"),
        Config(S=1024, D=768, NH=12, V=50257, L=12),
        "B",
        "24GiB",
        quantity="total",
    )
    assert isinstance(solution.closed_form, sympy.floor)
    assert solution.closed_form.has(sympy.Symbol("M", positive=True), SYMBOLS["S"])
    latex = solution.latex()
    assert latex.startswith("B = \\left\\lfloor") and "n_{\\mathrm{head}}" in latex
    assert solution._repr_latex_().startswith("$\\displaystyle B = ")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"budget": "1MB"}, BudgetError, "does not depend on B is already"),
        ({"budget": "0"}, BudgetError, "at least one byte"),
        ({"budget": "80 gigs"}, BudgetError, "cannot read a byte count from '80 gigs'"),
        ({"budget": "80GiB", "symbol": "D"}, ConfigError, "cannot solve for 'D'"),
        ({"budget": "80GiB", "quantity": "weights"}, ConfigError, "unknown quantity 'weights'"),
        ({"budget": "80GiB", "multiple_of": 0}, ConfigError, "multiple_of must be a positive"),
        (
            {"budget": "80GiB", "quantity": "loss", "symbol": "L"},
            BudgetError,
            "does not grow with L",
        ),
    ],
)
def test_bad_input(kwargs, error, message):
    args = {"symbol": "B", **kwargs}
    config = Config(S=1024, D=768, NH=12, V=50257, L=12)
    if args["symbol"] == "L":
        config = config.with_(L=None, B=8)
    with pytest.raises(error, match=message):
        largest(build_report("cuda"), config, args.pop("symbol"), args.pop("budget"), **args)


def test_smallest_value_not_fitting_says_so():
    config = Config(S=1024, D=768, NH=12, V=50257, L=12)
    fixed_plus = exact(build_report("cuda"), config.with_(B=1), "peak", "B", 1) - 1
    with pytest.raises(BudgetError, match="B=1 already needs"):
        largest(build_report("cuda"), config, "B", fixed_plus)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80GB", 80 * 10**9),
        ("80 GiB", 80 * 2**30),
        ("24GiB", 24 * 2**30),
        ("1.5e10", 15 * 10**9),
        ("1.5 GiB", 3 * 2**29),
        ("512", 512),
        ("2 kB", 2000),
        ("2KiB", 2048),
        ("7 B", 7),
        (4096, 4096),
    ],
)
def test_budget_units(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["-5GB", "abc", "", "5 XB", "0.2"])
def test_bad_budgets(text):
    with pytest.raises(BudgetError):
        parse_bytes(text)


def test_docs_worked_example_figures():
    """docs/sizing.md quotes these answers for GPT-2 XL on 80 GiB."""
    report = build_report("cuda")
    xl = Config(S=1024, D=1600, NH=25, V=50257, L=48, bias=True)
    fp32 = largest(report, xl, "B", "80GiB", quantity="total")
    amp = largest(report, xl.with_(amp=True), "B", "80GiB", quantity="total")
    assert (fp32.value, fp32.bytes_at_value, fp32.bytes_at_next) == (
        11,
        85_022_528_788,
        90_486_232_340,
    )
    assert (amp.value, amp.bytes_at_value, amp.bytes_at_next) == (
        17,
        83_424_823_700,
        86_683_240_852,
    )
    assert (
        largest(report, xl.with_(amp=True), "B", "80GiB", multiple_of=8, quantity="total").value
        == 16
    )
    # The default quantity is the peak of a training step as the caching allocator counts it.
    mma32, mma16 = (
        largest(report, xl, "B", "80GiB"),
        largest(report, xl.with_(amp=True), "B", "80GiB"),
    )
    assert (mma32.quantity, mma32.value, mma32.bytes_at_value) == (
        "max_memory_allocated",
        11,
        83_389_646_336,
    )
    assert (mma16.value, mma16.bytes_at_value, mma16.bytes_at_next) == (
        18,
        84_227_153_920,
        87_691_440_128,
    )
    peak16 = largest(report, xl.with_(amp=True), "B", "80GiB", quantity="peak")
    assert (peak16.value, peak16.bytes_at_value, peak16.bytes_at_next) == (
        18,
        84_158_439_072,
        87_622_725_280,
    )
    assert str(amp.closed_form) == (
        "floor((M - (216*D**2*L + 208*D*L + 16*D*S + 18*D*V + 32*D + 48*L + 8*S + 20))/"
        "(36*D*L*S + 6*D*S + 128*L*NH*ceiling(S/32) + 16*L*S + 8*S*V + 24*S))"
    )
