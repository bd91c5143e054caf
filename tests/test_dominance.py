"""The regimes' proofs: a skipped piece of a maximum is never the largest where its regime holds,
and the evaluators give the same bytes inside every regime, between them and outside all."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symmem import Config, ConfigError, build_report
from symmem.dominance import Regime, kept
from symmem.evaluate import exact_value
from symmem.model.spec import TRAINING
from symmem.sweep import sweep
from symmem.symbols import B, D, L, S, V

REPORTS = [("cuda", "efficient"), ("cuda", "math"), ("cpu", "default")]


def maxima(report, combo):
    """The largest maximum of each of the step's maxima, with the switches set to ``combo``."""
    values = dict(zip(report.model.switches, combo, strict=True))
    for name in ("peak", "max_memory_allocated"):
        found = report.totals[name].xreplace(values).atoms(sympy.Max)
        yield name, max(found, key=lambda m: len(m.args))


def within(level):
    """Configs that keep the regime ``level`` of TRAINING (0 broad, 1 narrow): built to hold
    each relation, so that a strategy needs no rejection."""
    wide = 8 if level else 1
    return st.builds(
        lambda head, NH, B, extra_S, v, L: Config(
            B=B,
            S=max(16, -(-head * NH // B)) + extra_S,
            D=head * NH,
            NH=NH,
            V=head * NH * wide + v,
            L=L + (3 if level else 0),
            amp=False,
        ),
        head=st.integers(1, 256),
        NH=st.integers(1, 64),
        B=st.integers(1, 64),
        extra_S=st.integers(0, 4096),
        v=st.integers(0, 200_000),
        L=st.integers(1, 96),
    ).filter(lambda c: c.D >= 32)


@settings(max_examples=30, deadline=None)
@given(level=st.sampled_from([0, 1]), data=st.data())
def test_the_relations_hold_for_the_configs_built_to_keep_them(level, data):
    config = data.draw(within(level))
    values = {B: config.B, S: config.S, D: config.D, V: config.V, L: config.L}
    assert all(bool(r.xreplace(values)) for r in TRAINING[level])


@pytest.mark.parametrize("relation", [V <= D, V + D >= 3, V >= D - 1, sympy.Eq(V, D)])
def test_a_regime_compares_positive_monomials(relation):
    with pytest.raises(ValueError, match="regime relation"):
        Regime((relation,), (B, S, D, V))


def test_the_test_proves_what_follows_and_nothing_else():
    regime = Regime((V >= D, B * S >= D), (B, S, D, V))
    assert regime.below(D**2, B * S * D)  # D <= B·S
    assert regime.below(3 * D * V + 1, 4 * D * V)  # every size is at least 1
    assert not regime.below(3 * D * V + 2, 4 * D * V)
    assert regime.below(sympy.ceiling(D / 2) * 2, D + 2)  # a rounding up adds less than 1
    assert not regime.below(D * V, B * S * D)  # V <= B·S does not follow
    assert not regime.below(sympy.ceiling(D / 2) * 2, D)
    assert not regime.below(D, D - 1)


@pytest.mark.parametrize("kernel", REPORTS)
def test_each_regime_skips_pieces(kernel):
    report = build_report(*kernel)
    regimes = report.compiled.regimes
    for combo in itertools.product((0, 1), repeat=len(report.model.switches)):
        if (bool(combo[0]), bool(combo[1])) not in report.kernels:
            continue
        for _, found in maxima(report, combo):
            counts = [len(kept(found.args, regime)) for regime in regimes]
            assert counts[-1] <= counts[0] < len(found.args)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kernel=st.sampled_from(REPORTS),
    level=st.sampled_from([0, 1]),
    data=st.data(),
    combo=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_a_skipped_piece_is_never_the_largest_inside_its_regime(kernel, level, data, combo):
    """The proof against the arithmetic: at a config inside the regime, the largest of the kept
    pieces is the largest of all, each piece evaluated exactly from its expression."""
    report = build_report(*kernel)
    if (combo[0], combo[1]) not in report.kernels:
        return
    config = data.draw(within(level))
    values = dict(zip(report.model.sizes, config.arguments()[:6], strict=True))
    regime = report.compiled.regimes[level]
    for _, found in maxima(report, tuple(map(int, combo))):
        pieces = [exact_value(piece, values) for piece in found.args]
        assert max(pieces[i] for i in kept(found.args, regime)) == max(pieces)


def branch_configs():
    """A config inside the narrow regime, one inside the broad one only, and one outside both
    (each relation of the narrow one fails somewhere), for each switch combination."""
    sizes = [
        dict(B=24, S=1024, D=384, NH=4, V=8192, L=4),  # inside the narrow regime
        dict(B=24, S=1024, D=384, NH=4, V=1000, L=4),  # V < 8·D: the broad one only
        dict(B=24, S=1024, D=384, NH=4, V=8192, L=3),  # L < 4: the broad one only
        dict(B=2, S=100, D=384, NH=4, V=8192, L=4),  # B·S < D: none
        dict(B=24, S=1024, D=16, NH=4, V=8192, L=4),  # D < 32: none
        dict(B=24, S=8, D=384, NH=4, V=8192, L=4),  # S < 16: none
        dict(B=24, S=1024, D=384, NH=4, V=300, L=4),  # V < D: none
    ]
    for size, amp, dropout, bias in itertools.product(sizes, *[(False, True)] * 3):
        yield Config(**size, amp=amp, dropout=dropout, bias=bias)


@pytest.mark.parametrize("kernel", REPORTS)
def test_every_branch_of_the_evaluators_equals_substitution(kernel):
    """The scalar evaluator's branches and the sweep's passes (narrow regime, broad, every
    piece) against SymPy's substitution, in one sweep that mixes them all."""
    report = build_report(*kernel)
    batch = [c for c in branch_configs() if (c.amp, c.dropout) in report.kernels]
    names = (*report.model.size_names, *report.model.switch_names)
    out = sweep(report, **{n: [getattr(c, n) for c in batch] for n in names})
    for i, config in enumerate(batch):
        expected = {k: int(e.xreplace(config.values())) for k, e in report.totals.items()}
        sizes = [getattr(config, n) for n in report.model.size_names]
        switches = {n: getattr(config, n) for n in report.model.switch_names}
        fast = report.compiled.totals(*sizes, **switches)
        assert {k: fast[k] for k in expected} == expected
        assert {k: int(out[k][i]) for k in expected} == expected


def test_the_sweep_evaluates_again_only_what_leaves_a_regime():
    """Which configs leave each regime, as the sweep's masks say: the relations by hand."""
    compiled = build_report("cuda").compiled
    rng = np.random.default_rng(7)
    heads = rng.integers(1, 9, 500)
    sizes = [
        rng.integers(1, 9, 500),
        rng.integers(1, 300, 500),
        heads * rng.integers(1, 40, 500),
        heads,
        rng.integers(1, 5000, 500),
        rng.integers(1, 8, 500),
    ]
    b, s, d, _, v, layers = sizes
    broad = (v >= d) & (b * s >= d) & (d >= 32) & (s >= 16)
    narrow = broad & (v >= 8 * d) & (layers >= 4)
    assert (compiled.outside(0, *sizes) == ~broad).all()
    assert (compiled.outside(1, *sizes) == ~narrow).all()
    assert broad.any() and (~broad).any() and narrow.any() and (broad & ~narrow).any()


def test_fast_totals_name_a_switch_the_model_does_not_have():
    compiled = build_report("cuda").compiled
    with pytest.raises(ConfigError, match=r"no switch B, foo \(its switches: amp, dropout, bias\)"):
        compiled.totals(2, 40, 64, 4, 101, 1, foo=True, B=2)
    with pytest.raises(ConfigError, match="--no-tied does not apply to nanogpt"):
        compiled.totals(2, 40, 64, 4, 101, 1, tied=False)
    with pytest.raises(ConfigError, match="--NKV does not apply to nanogpt"):
        compiled.totals(2, 40, 64, 4, 101, 1, NKV=2)
    # nanoGPT always ties its embedding: saying so changes nothing.
    tied = compiled.totals(2, 40, 64, 4, 101, 1, amp=True, tied=True)
    assert tied == compiled.totals(2, 40, 64, 4, 101, 1, amp=True)
