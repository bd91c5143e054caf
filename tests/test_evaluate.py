"""Compiled and swept results equal the exact symbolic evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symmem import Config, ConfigError, KernelError, build_report
from symmem.sweep import sweep

REPORTS = [("cuda", "efficient"), ("cuda", "math"), ("cuda", "flash"), ("cpu", "default")]

configs = st.builds(
    lambda B, S, head, NH, V, L, amp, dropout, bias: Config(
        B=B, S=S, D=head * NH, NH=NH, V=V, L=L, amp=amp, dropout=dropout, bias=bias
    ),
    B=st.integers(1, 10**6),
    S=st.integers(1, 10**6),
    head=st.integers(1, 10**4),
    NH=st.integers(1, 128),
    V=st.integers(1, 10**7),
    L=st.integers(1, 10**4),
    amp=st.booleans(),
    dropout=st.booleans(),
    bias=st.booleans(),
)


def substituted(report, config):
    """Every total by SymPy substitution into the report's expressions: no generated code."""
    values = config.values()
    totals = {k: int(e.xreplace(values)) for k, e in report.totals.items()}
    return totals, int(report.param_count.xreplace(values))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=st.sampled_from(REPORTS), config=configs)
def test_compiled_equals_symbolic(report, config):
    report = build_report(*report)
    try:
        report.kernel_for(config)
    except KernelError:
        with pytest.raises(KernelError):
            report.compiled(config)
        return
    totals, params = substituted(report, config)
    compiled = report.compiled(config)
    assert {k: compiled[k] for k in totals} == totals
    assert compiled["param_count"] == params
    sizes = [getattr(config, n) for n in report.model.size_names]
    switches = {n: getattr(config, n) for n in report.model.switch_names}
    fast = report.compiled.totals(*sizes, **switches)
    assert {k: fast[k] for k in totals} == totals
    assert dict(report.at(config).totals) == totals


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=st.sampled_from(REPORTS), batch=st.lists(configs, min_size=1, max_size=12))
def test_sweep_equals_symbolic(report, batch):
    report = build_report(*report)
    batch = [c for c in batch if (c.amp, c.dropout) in report.kernels]
    if not batch:
        return
    names = (*report.model.size_names, *report.model.switch_names)
    axes = {name: [getattr(c, name) for c in batch] for name in names}
    out = sweep(report, **axes)
    for i, config in enumerate(batch):
        totals, params = substituted(report, config)
        assert {k: int(out[k][i]) for k in totals} == totals
        assert int(out["param_count"][i]) == params


def test_sweep_in_blocks_puts_every_result_in_its_place(monkeypatch):
    """Blocks that mix switch combinations, one that holds a single one, and a short last one;
    the sums in blocks of another length; configs outside each regime in several blocks (set
    aside block by block, evaluated again in chunks)."""
    import symmem.sweep

    monkeypatch.setattr(symmem.sweep, "_BLOCK", 5)
    monkeypatch.setattr(symmem.sweep, "_SUMS_BLOCK", 7)
    report = build_report("cuda", "math")
    rng = np.random.default_rng(3)
    n = 23
    heads = rng.integers(1, 9, n)
    axes = {
        "B": rng.integers(1, 9, n),
        "S": rng.integers(1, 300, n),
        "D": heads * rng.integers(1, 40, n),
        "NH": heads,
        "V": rng.integers(1, 5000, n),
        "L": rng.integers(1, 5, n),
        "amp": rng.integers(0, 2, n),
        "dropout": rng.integers(0, 2, n),
        "bias": rng.integers(0, 2, n),
    }
    for name in ("amp", "dropout", "bias"):
        axes[name][5:10] = 1  # the second block: one combination
    sizes = [axes[name] for name in report.model.size_names]
    narrow, broad = (report.compiled.outside(level, *sizes) for level in (1, 0))
    assert (narrow & ~broad).sum() > 5 and broad.sum() > 5  # more than one block of each
    out = sweep(report, **axes)
    for i in range(n):
        values = {name: int(axis[i]) for name, axis in axes.items()}
        switches = {name: bool(values.pop(name)) for name in ("amp", "dropout", "bias")}
        config = Config(**values, **switches)
        totals, params = substituted(report, config)
        assert {k: int(out[k][i]) for k in totals} == totals
        assert int(out["param_count"][i]) == params


def test_sweep_uses_int64_when_safe_and_python_ints_when_not():
    report = build_report("cuda")
    small = sweep(report, B=[1, 2], S=1024, D=768, NH=12, V=50257, L=12)
    assert small["total"].dtype == np.int64
    huge = Config(B=10**9, S=10**7, D=10**6, NH=10, V=10**7, L=10**4)
    out = sweep(report, B=[huge.B], S=huge.S, D=huge.D, NH=huge.NH, V=huge.V, L=huge.L)
    assert out["total"].dtype == object
    assert out["total"][0] == report.at(huge).totals["total"] > 2**63  # float64 would round


def test_an_empty_axis_gives_empty_results():
    report = build_report("cuda")
    none = np.array([], dtype=np.int64)
    out = sweep(report, B=none, S=1024, D=768, NH=12, V=50257, L=12)
    assert out["total"].shape == (0,) and out["peak"].dtype == np.int64
    grid = sweep(report, grid=True, B=none, S=[1024, 2048], D=768, NH=12, V=50257, L=12)
    assert grid["total"].shape == (0, 2) and set(grid) == set(out)


def test_grid_sweep_shape_and_values():
    report = build_report("cuda", "math")
    out = sweep(
        report,
        grid=True,
        B=range(1, 5),
        S=[64, 128, 256],
        D=256,
        NH=4,
        V=1000,
        L=2,
        amp=[False, True],
    )
    assert out["total"].shape == (4, 3, 2)
    config = Config(B=3, S=128, D=256, NH=4, V=1000, L=2, amp=True)
    assert out["total"][2, 1, 1] == report.at(config).totals["total"]


@pytest.mark.parametrize(
    ("axes", "error", "message"),
    [
        ({"B": [1, 0]}, ConfigError, "B must be positive"),
        ({"D": [10]}, ConfigError, "D is not divisible by NH"),
        ({"amp": [2]}, ConfigError, "amp must be 0/1"),
        ({"amp": [-1]}, ConfigError, "amp must be 0/1"),
        ({"B": [1.5]}, ConfigError, "B must hold whole numbers"),
        ({"X": 1}, ConfigError, "unknown sweep axes for nanogpt: X"),
    ],
)
def test_sweep_bad_input(axes, error, message):
    base = {"B": 1, "S": 8, "D": 12, "NH": 3, "V": 10, "L": 1}
    with pytest.raises(error, match=message):
        sweep(build_report("cuda"), **(base | axes))


def test_sweep_refuses_a_kernel_that_cannot_run():
    with pytest.raises(KernelError, match="flash attention needs 16-bit inputs"):
        sweep(build_report("cuda", "flash"), B=1, S=8, D=12, NH=3, V=10, L=1, amp=[True, False])


def test_missing_size():
    with pytest.raises(ConfigError, match="missing sizes: L"):
        sweep(build_report("cuda"), B=1, S=8, D=12, NH=3, V=10)


def test_fast_totals_check_every_call_not_only_the_first():
    """The fast path's generated guard sends a call it cannot vouch for to the full check: a
    float, a bool, a size that does not divide or a wrong count is refused with the config's
    own error even after a valid call with the same switches; a NumPy integer is a whole number
    and gives the same bytes as the int."""
    compiled = build_report("cuda", "efficient").compiled
    good = compiled.totals(2, 40, 64, 4, 101, 1, amp=True)
    assert compiled.totals(np.int64(2), 40, 64, 4, 101, 1, amp=True) == good
    for sizes, message in [
        ((2.0, 40, 64, 4, 101, 1), "B must be a whole number"),
        ((True, 40, 64, 4, 101, 1), "B must be a whole number"),
        ((2, 40, 64, 3, 101, 1), "not divisible by NH=3"),
        ((2, 0, 64, 4, 101, 1), "S must be positive"),
        ((2, 40, 64), "takes 6 sizes"),
    ]:
        with pytest.raises(ConfigError, match=message):
            compiled.totals(*sizes, amp=True)
    with pytest.raises(ConfigError, match="amp must be True or False"):
        compiled.totals(2, 40, 64, 4, 101, 1, amp=[1])
    assert compiled.totals(2, 40, 64, 4, 101, 1, amp=True) == good


@pytest.mark.parametrize("kernel", [("cpu", "default"), ("cuda", "math"), ("cuda", "efficient")])
def test_exact_value_equals_substitution(kernel):
    """The tree walk that finds where a config's peak falls gives what SymPy's substitution
    gives, for every total, every phase's peak and every candidate of every step phase."""
    from symmem.evaluate import exact_value

    report = build_report(*kernel)
    config = Config(B=3, S=40, D=96, NH=3, V=333, L=2, amp=False, dropout=True)
    values = config.values()
    run = report.step_at(config)
    exprs = [*report.totals.values(), *report.phases.values()]
    exprs += [c for phase in run.phases for c, _ in phase.candidates]
    exprs += [p for p, _ in run.scenario.decisions]
    for expr in exprs:
        assert exact_value(expr, values) == expr.xreplace(values)


def test_a_vector_function_takes_outputs_and_returns_only_some():
    """Outputs computed elsewhere come in as arguments (only those used), only the outputs
    asked for come back, and each product of sizes is computed once."""
    import sympy

    from symmem.evaluate import generate, load

    x, y, z = sympy.symbols("x y z", positive=True)
    exprs = [
        x * y * z + 7 * x,
        x + 1,
        sympy.Max(x * y * z + 7 * x + x * y, 5 * x * y + sympy.ceiling(x * y * z / 8)),
    ]
    source = generate(exprs, (x, y, z), vector=True, given=[0, 1], returns=[2])
    assert source.startswith("def _f(a0, a1, a2, r0):")  # r1 is not needed
    assert source.count("(a0 * a1)") == 1  # x·y once, x·y·z from it
    function = load(source, vector=True)
    rng = np.random.default_rng(5)
    xs, ys, zs = (rng.integers(1, 100, 50) for _ in range(3))
    (peak,) = function(xs, ys, zs, xs * ys * zs + 7 * xs)
    expected = [
        int(exprs[2].xreplace({x: a, y: b, z: c})) for a, b, c in zip(xs, ys, zs, strict=True)
    ]
    assert peak.tolist() == expected
    with pytest.raises(ValueError, match="cannot hold a maximum"):
        generate(exprs, (x, y, z), vector=True, given=[2])
    with pytest.raises(ValueError, match="only a vector function"):
        generate(exprs, (x, y, z), returns=[2])
