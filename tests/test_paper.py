"""The papers' tables (symmem.paper) against the formulas and numbers the papers print."""

from __future__ import annotations

import pytest
import sympy

from symmem import ConfigError, build_report
from symmem.paper import (
    PAPER_TERMS,
    PSI,
    STAGES,
    TABLE_2,
    ZERO_PAPER,
    ZERO_PYTORCH,
    N,
    T,
    paper_activations,
    paper_terms,
    table_2,
    zero_model_states,
    zero_terms,
)
from symmem.symbols import AMP, BIAS, DROPOUT, NH, B, D, S

# The paper's variables: sequence, micro-batch, hidden size, heads, tensor-parallel size.
s, b, h, a, t = S, B, D, NH, T


def same(x: sympy.Expr, y: sympy.Expr) -> bool:
    return sympy.simplify(x - y) == 0


# -- Korthikanti et al. 2022 ------------------------------------------------------------------

# Table 2, "Activations memory, in bytes, per transformer layer for different techniques",
# typed from the paper: these are its published formulas, not computed.
PAPER_TABLE_2 = {
    "no parallelism": s * b * h * (34 + 5 * a * s / h),
    "tensor parallel (baseline)": s * b * h * (10 + 24 / t + 5 * a * s / (h * t)),
    "tensor + sequence parallel": s * b * h * (34 / t + 5 * a * s / (h * t)),
    "tensor parallel + selective activation recomputation": s * b * h * (10 + 24 / t),
    "tensor parallel + sequence parallel + selective activation recomputation": (
        s * b * h * (34 / t)
    ),
    "full activation recomputation": s * b * h * 2,
}


@pytest.mark.parametrize(("name", "computed"), table_2(), ids=[n for n, _ in TABLE_2])
def test_table_2_rows_are_the_papers(name: str, computed: sympy.Expr) -> None:
    assert same(computed, PAPER_TABLE_2[name])


def test_table_2_has_the_papers_six_rows_in_order() -> None:
    assert [name for name, _ in table_2()] == list(PAPER_TABLE_2)


def test_equations_1_2_4_and_6() -> None:
    assert same(paper_activations(), s * b * h * (34 + 5 * a * s / h))  # Eq. 1
    assert same(paper_activations(tp=t), s * b * h * (10 + 24 / t + 5 * a * s / (h * t)))  # Eq. 2
    eq4 = s * b * h * (10 / t + 24 / t + 5 * a * s / (h * t))
    assert same(paper_activations(tp=t, sp=True), eq4)  # Eq. 4, first form
    assert same(eq4, s * b * h / t * (34 + 5 * a * s / h))  # Eq. 4, second form
    assert same(paper_activations(tp=t, sp=True, recompute="selective"), 34 * s * b * h / t)  # 6


def test_full_recompute_keeps_the_layer_input() -> None:
    # Section 5: 2sbhL, "further reduced to 2sbhL/t" when each tensor-parallel rank stores a slice.
    assert same(paper_activations(recompute="full"), 2 * s * b * h)
    assert same(paper_activations(tp=t, recompute="full"), 2 * s * b * h)
    assert same(paper_activations(tp=t, sp=True, recompute="full"), 2 * s * b * h / t)
    kept = [term.name for term, nbytes in paper_terms(recompute="full") if nbytes != 0]
    assert kept == ["layer-norm 1 input"]


def _block(name: str) -> sympy.Expr:
    return sympy.Add(*(term.nbytes for term in PAPER_TERMS if term.block == name))


def test_section_4_1_breakdown() -> None:
    assert same(_block("attention"), 11 * s * b * h + 5 * a * s**2 * b)
    assert same(_block("mlp"), 19 * s * b * h)
    assert same(_block("layernorm"), 4 * s * b * h)
    assert len(PAPER_TERMS) == 14


def test_what_each_option_divides() -> None:
    by_shard = {
        shard: sympy.Add(*(x.nbytes for x in PAPER_TERMS if x.shard == shard))
        for shard in ("tensor", "sequence")
    }
    # Section 4.2.2: "the 10sbh part of Equation 2 is due to these replicated operations".
    assert same(by_shard["sequence"], 10 * s * b * h)
    assert same(by_shard["tensor"], 24 * s * b * h + 5 * a * s**2 * b)
    core = sympy.Add(*(x.nbytes for x in PAPER_TERMS if x.core))
    assert same(core, 5 * a * s**2 * b)  # Section 5: selective recomputation drops 5as/h


def test_dropped_rows_are_zero_and_the_rest_unchanged() -> None:
    rows = paper_terms(tp=4, recompute="selective")
    assert len(rows) == len(PAPER_TERMS)
    for term, nbytes in rows:
        if term.core:
            assert nbytes == 0
        elif term.shard == "tensor":
            assert same(nbytes, term.nbytes / 4)
        else:
            assert nbytes == term.nbytes


@pytest.mark.parametrize(
    ("model", "heads", "seq", "hidden", "term_5as_h", "saved_percent"),
    [("GPT-3", 96, 2048, 12288, 80, 70), ("MT-NLG", 128, 2048, 20480, 64, 65)],
)
def test_section_5_selective_recompute_savings(
    model: str, heads: int, seq: int, hidden: int, term_5as_h: int, saved_percent: int
) -> None:
    """Section 5: 5as/h is 80 (GPT-3) and 64 (MT-NLG); selective recomputation saves 70% and
    65% of the activation memory (the paper rounds to whole percent)."""
    values = {NH: heads, S: seq, D: hidden, B: 1}
    full = paper_activations().xreplace(values)
    selective = paper_activations(recompute="selective").xreplace(values)
    assert full / (s * b * h).xreplace(values) - 34 == term_5as_h
    saved = 100 * (1 - sympy.Rational(selective, full))
    assert sympy.floor(saved + sympy.Rational(1, 2)) == saved_percent


def test_every_paper_term_names_a_module_symmem_traces() -> None:
    report = build_report("cuda", attention="math")
    modules = {term.module for term in report.terms if term.per_layer}
    assert {term.module for term in PAPER_TERMS} <= modules


# -- reconciling with symmem's exact profiles (docs/papers.md) ---------------------------------

BF16_DROPOUT = {AMP: 1, DROPOUT: 1, BIAS: 0}


def test_math_kernel_minus_paper_is_what_docs_say() -> None:
    """bf16 autocast, dropout, math kernel: fp32 layer-norm inputs (+4sbh) and their mean and
    rstd (+16sb), Q, K and V in fp32 (+6sbh), fp32 softmax and dropped probabilities (+4as²b),
    and the bf16 weight copies autocast saves (+24h²)."""
    block = build_report("cuda", attention="math").total("block").xreplace(BF16_DROPOUT)
    extra = 10 * s * b * h + 4 * a * s**2 * b + 16 * s * b + 24 * h**2
    assert same(sympy.piecewise_fold(block) - paper_activations(), extra)


def test_default_kernel_minus_selective_paper_is_what_docs_say() -> None:
    """The fused kernel saves no s² tensor, like selective recomputation; it keeps Q, K, V and
    its output in bf16 as the paper counts them, plus a padded fp32 logsumexp."""
    block = build_report("cuda").total("block").xreplace(BF16_DROPOUT)
    extra = 4 * s * b * h + 16 * s * b + 24 * h**2 + 128 * b * a * sympy.ceiling(s / 32)
    assert same(block - paper_activations(recompute="selective"), extra)


def test_worked_numbers_in_docs() -> None:
    values = {S: 1024, B: 8, D: 1024, NH: 16}
    assert paper_activations().xreplace(values) == 956_301_312
    assert paper_activations(recompute="selective").xreplace(values) == 285_212_672
    math = build_report("cuda", attention="math").total("block").xreplace(BF16_DROPOUT)
    assert math.xreplace(values) == 1_602_355_200
    fused = build_report("cuda").total("block").xreplace(BF16_DROPOUT)
    assert fused.xreplace(values) == 344_588_288


# -- ZeRO, Rajbhandari et al. 2020 ------------------------------------------------------------

K = 12  # Section 3.1: "Mixed-precision Adam has K = 12"

# Sections 5.1 to 5.3, typed from the paper.
PAPER_ZERO = {
    0: (2 + 2 + K) * PSI,
    1: 4 * PSI + K * PSI / N,
    2: 2 * PSI + (2 + K) * PSI / N,
    3: (2 + 2 + K) * PSI / N,
}


@pytest.mark.parametrize("stage", STAGES)
def test_zero_stages_are_the_papers(stage: int) -> None:
    assert same(zero_model_states(stage), PAPER_ZERO[stage])


def test_zero_optimizer_multiplier_is_12() -> None:
    assert sum(x.bytes_per_param for x in ZERO_PAPER if x.sharded_from == 1) == K
    assert sum(x.bytes_per_param for x in ZERO_PAPER) == 16
    assert sum(x.bytes_per_param for x in ZERO_PYTORCH) == 16


def _gb_one_decimal(nbytes: sympy.Expr) -> sympy.Rational:
    """GB (10⁹ bytes) rounded half up to one decimal, as the paper prints them."""
    return sympy.floor(sympy.Rational(nbytes, 10**8) + sympy.Rational(1, 2)) / 10


def test_zero_figure_1_example() -> None:
    """Figure 1 and Sections 5.1 to 5.3: Ψ = 7.5B, N_d = 64, K = 12. The paper prints decimal GB
    to one decimal: 31.40625 GB as 31.4, 16.640625 as 16.6 and 1.875 as 1.9; 120 is exact."""
    exact = [zero_model_states(stage, 7_500_000_000, ranks=64) for stage in STAGES]
    assert exact == [120_000_000_000, 31_406_250_000, 16_640_625_000, 1_875_000_000]
    printed = [sympy.Rational(x) for x in ("120", "31.4", "16.6", "1.9")]
    assert [_gb_one_decimal(x) for x in exact] == printed


def test_zero_section_3_1_gpt2_example() -> None:
    # "GPT-2 with 1.5 Billion parameters ... a memory requirement of at least 24 GB"
    assert zero_model_states(0, 1_500_000_000) == 24 * 10**9


def test_zero_reductions_for_many_ranks() -> None:
    # Section 5.4: "reduces ... by up to 4x, 8x, and N_d respectively".
    base = zero_model_states(0)
    assert sympy.limit(base / zero_model_states(1), N, sympy.oo) == 4
    assert sympy.limit(base / zero_model_states(2), N, sympy.oo) == 8
    assert same(base / zero_model_states(3), N)


PYTORCH_ZERO = {
    0: 16 * PSI,
    1: 8 * PSI + 8 * PSI / N,
    2: 4 * PSI + 12 * PSI / N,
    3: 16 * PSI / N,
}


@pytest.mark.parametrize("stage", STAGES)
def test_zero_pytorch_accounting(stage: int) -> None:
    assert same(zero_model_states(stage, accounting="pytorch"), PYTORCH_ZERO[stage])


def test_pytorch_states_are_symmem_terms_at_4_bytes_per_parameter() -> None:
    report = build_report("cuda")
    for state in ZERO_PYTORCH:
        terms = [x for x in report.terms if x.name == state.name]
        assert terms, state.name
        total = sympy.Add(*(x.formula for x in terms))
        assert same(total, state.bytes_per_param * report.param_count), state.name


def test_zero_terms_shard_by_stage() -> None:
    rows = dict((x.name, nbytes) for x, nbytes in zero_terms(1, 100, ranks=4))
    assert rows == {
        "fp16 parameters": 200,
        "fp16 gradients": 200,
        "fp32 parameter copy": 100,
        "fp32 momentum": 100,
        "fp32 variance": 100,
    }


# -- bad options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"recompute": "partial"}, "recompute must be one of 'none', 'selective', 'full'"),
        ({"recompute": None}, "recompute must be one of"),
        ({"sp": 1}, "sp must be True or False"),
        ({"sp": "yes"}, "sp must be True or False"),
        ({"tp": 0}, "tp must be a positive whole number"),
        ({"tp": -2}, "tp must be a positive whole number"),
        ({"tp": True}, "tp must be a positive whole number or a SymPy expression"),
        ({"tp": 2.0}, "tp must be a positive whole number or a SymPy expression"),
        ({"tp": sympy.Rational(1, 2)}, "tp must be a positive whole number"),
        ({"tp": sympy.Symbol("x")}, "tp must be known to be positive"),
    ],
)
def test_bad_activation_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        paper_activations(**options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        paper_terms(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((4,), {}, "stage must be one of 0, 1, 2, 3"),
        ((-1,), {}, "stage must be one of"),
        ((True,), {}, "stage must be one of"),
        ((1.0,), {}, "stage must be one of"),
        ((1,), {"accounting": "deepspeed"}, "accounting must be one of 'paper', 'pytorch'"),
        ((1,), {"ranks": 0}, "ranks must be a positive whole number"),
        ((1, -5), {}, "params must be a positive whole number"),
        ((1, 7.5e9), {}, "params must be a positive whole number or a SymPy expression"),
    ],
)
def test_bad_zero_options(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        zero_model_states(*args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        zero_terms(*args, **kwargs)  # type: ignore[arg-type]


def test_symbolic_sizes_are_accepted() -> None:
    report = build_report("cuda")
    assert same(
        zero_model_states(3, report.param_count, ranks=8, accounting="pytorch"),
        2 * report.param_count,
    )
