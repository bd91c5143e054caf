"""GPT-2 as transformers 5.23.0 builds it (``GPT2LMHeadModel``): every CPU term and total equal to
what PyTorch 2.13 saves and allocates, to the byte; presets, solve, LaTeX, sweeps and the
several-GPU rules work for it; bad input is one line."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symmem import Config, ConfigError, build_report
from symmem.cli import main
from symmem.presets import from_hf_config, preset
from tests.conftest import needs_torch

# Odd sizes: S and D not powers of two, V not a multiple of 8, B = 1 and NH = 1 (where a reshape
# of the math path becomes a view), a position table longer than S and one exactly S long.
SHAPES = [
    dict(B=2, S=13, D=24, NH=3, V=101, L=2, SMAX=17),
    dict(B=1, S=37, D=60, NH=4, V=97, L=1, SMAX=37),
    dict(B=3, S=33, D=30, NH=1, V=64, L=3, SMAX=40),
]
SWITCHES = list(itertools.product((False, True), repeat=3))  # amp, dropout, tied


def _cases():
    for shape, (amp, dropout, tied) in itertools.product(SHAPES, SWITCHES):
        yield pytest.param(
            Config(model="gpt2", **shape, amp=amp, dropout=dropout, tied=tied),
            "default",
            id=f"{'-'.join(f'{k}{v}' for k, v in shape.items())}-amp{int(amp)}"
            f"-drop{int(dropout)}-tied{int(tied)}",
        )
    for amp, dropout in itertools.product((False, True), repeat=2):
        shape = SHAPES[0]
        yield pytest.param(
            Config(model="gpt2", **shape, amp=amp, dropout=dropout, tied=False),
            "math",
            id=f"math-amp{int(amp)}-drop{int(dropout)}",
        )


#: With one token per batch or heads of size 1, PyTorch's backward makes one more gradient copy
#: than symmem models (docs/validation.md, as for nanoGPT): only these rows, only upwards.
DEGENERATE_ROWS = ("step: backward peak", "total: peak", "total: max_memory_allocated")


def _check(config: Config, attention: str) -> None:
    from symmem.validate.compare import compare
    from symmem.validate.measure import measure

    report = build_report("cpu", attention, model="gpt2")
    assert report.loop.name == "plain"
    estimate = report.at(config)
    measurement = measure(config, device="cpu", attention=attention, loop=report.loop.name)
    rows = compare(estimate, measurement).differences()
    if config.B * config.S == 1 or config.D == config.NH:
        assert all(r.name in DEGENERATE_ROWS and r.measured > r.predicted for r in rows), rows
    else:
        assert not rows
    assert measurement.extra["kernel"] == estimate.kernel
    # gelu_new's three Python numbers are saved as 0-dim float64 tensors: 8 bytes each in the
    # graph's saved fields, which saved_tensors_hooks never sees.
    wrapped = [(term, b) for term, b in estimate.terms() if term.dtype == "float64"]
    assert {term.module for term, _ in wrapped} == {"transformer.h.*.mlp.act"}
    assert sum(b for _, b in wrapped) == 3 * 8 * config.L
    assert measurement.hook_bytes == measurement.totals["saved"] - 3 * 8 * config.L
    # The cache holds every layer's keys and values, which the attention saves.
    assert measurement.totals["cache"] == 2 * config.L * config.B * config.S * config.D * (
        2 if config.amp else 4
    )
    for term in measurement.terms:
        if term.per_block:
            assert len(term.per_block) == config.L and len(set(term.per_block)) == 1


@needs_torch
@pytest.mark.parametrize(("config", "attention"), list(_cases()))
def test_gpt2_cpu_terms_equal_measurement(config, attention):
    _check(config, attention)


@needs_torch
@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    B=st.integers(1, 3),
    S=st.integers(1, 50),
    extra=st.integers(0, 20),
    head=st.integers(1, 12),
    NH=st.integers(1, 4),
    V=st.integers(2, 130),
    L=st.integers(1, 3),
    amp=st.booleans(),
    dropout=st.booleans(),
    tied=st.booleans(),
    attention=st.sampled_from(["default", "math"]),
)
def test_random_small_configs_match(B, S, extra, head, NH, V, L, amp, dropout, tied, attention):
    sizes = dict(B=B, S=S, D=head * NH, NH=NH, V=V, L=L, SMAX=S + extra)
    _check(Config(model="gpt2", **sizes, amp=amp, dropout=dropout, tied=tied), attention)


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("amp", [False, True])
def test_one_layer_at_gpt2_small_width(amp):
    _check(
        Config(model="gpt2", B=1, S=128, D=768, NH=12, V=50257, L=1, SMAX=1024, amp=amp), "default"
    )


@needs_torch
def test_validate_cli_for_gpt2(capsys):
    argv = ["validate", "--arch", "gpt2", "--platform", "cpu", "--device", "cpu", "--json"]
    sizes = ["--B", "2", "--S", "13", "--D", "24", "--NH", "3", "--V", "101", "--L", "1"]
    assert main([*argv, *sizes, "--SMAX", "17", "--amp"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["predicted"]["config"]["model"] == "gpt2"
    assert data["match"], data["differences"]


GPT2_SMALL = dict(D=768, NH=12, L=12, V=50257, SMAX=1024)


def test_preset_equals_the_sizes_given_by_hand(capsys):
    common = ["estimate", "--arch", "gpt2", "--B", "2", "--S", "256", "--amp", "--json"]
    assert main([*common, "--model", "gpt2"]) == 0
    from_preset = json.loads(capsys.readouterr().out)
    by_hand = [f"--{k}={v}" for k, v in GPT2_SMALL.items()]
    assert main([*common, *by_hand]) == 0
    assert json.loads(capsys.readouterr().out) == from_preset
    config = Config(model="gpt2", B=2, S=256, **GPT2_SMALL, amp=True)
    assert from_preset["config"] == config.as_dict()
    assert preset("gpt2").config("gpt2", B=2, S=256, amp=True) == config


def test_config_json_equals_the_preset(tmp_path):
    # GPT-2's published config.json: dropout 0.1 everywhere, 1,024 positions.
    path = tmp_path / "config.json"
    published = {"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12}
    published |= {"vocab_size": 50257, "n_positions": 1024, "attn_pdrop": 0.1}
    path.write_text(json.dumps(published))
    config = from_hf_config(path, B=4, S=1024)
    assert config == preset("gpt2").config("gpt2", B=4, S=1024, dropout=True)


def test_gpt2_small_parameters_as_transformers_counts_them():
    # GPT2LMHeadModel(GPT2Config()) has 124,439,808 parameters, the tied lm_head once; untied,
    # lm_head adds V·D.
    report = build_report("cuda", model="gpt2")
    tied = report.at(Config(model="gpt2", B=1, S=1024, **GPT2_SMALL))
    untied = report.at(Config(model="gpt2", B=1, S=1024, **GPT2_SMALL, tied=False))
    assert tied.param_count == 124_439_808
    assert untied.param_count == 124_439_808 + 50257 * 768


def test_cuda_profile_rules():
    # Wrapped numbers live in host memory beside a GPU; CUDA's autocast runs pow in fp32
    # (aten/src/ATen/autocast_mode.cpp), so under AMP pow saves an fp32 copy of its input.
    report = build_report("cuda", model="gpt2")
    terms = {t.key: t for t in report.terms}
    for name in ("MulBackward0-other", "MulBackward0#2-other", "MulBackward0#3-other"):
        assert terms[(name, "transformer.h.*.mlp.act")].location == "host"
    pow_self = terms[("PowBackward0-self", "transformer.h.*.mlp.act")]
    assert pow_self.dtype == "float32"
    cpu = {t.key: t for t in build_report("cpu", model="gpt2").terms}
    assert cpu[("PowBackward0-self", "transformer.h.*.mlp.act")].dtype.endswith("bfloat16 (AMP)")
    config = Config(model="gpt2", B=2, S=64, D=96, NH=4, V=500, L=3, SMAX=64)
    estimate = report.at(config)
    assert estimate.totals["host"] >= 3 * 8 * config.L
    assert estimate.totals["saved"] > sum(estimate.totals[k] for k in ("activations", "loss"))


def test_solve_matches_a_linear_scan():
    from symmem.solve import largest

    report = build_report("cuda", model="gpt2", gpu="h100-80gb")
    config = Config(model="gpt2", S=1024, **GPT2_SMALL, amp=True)
    solution = largest(report, config, "B", "20GiB", quantity="total")
    fits = [b for b in range(1, 200) if report.at(config.with_(B=b)).totals["total"] <= 20 * 2**30]
    assert solution.value == max(fits)


def test_sweep_equals_evaluating_each_config():
    from symmem.sweep import sweep

    report = build_report("cuda", model="gpt2")
    out = sweep(
        report,
        B=[1, 3],
        S=[64, 200],
        D=96,
        NH=4,
        V=500,
        L=2,
        SMAX=256,
        amp=True,
        dropout=[False, True],
        tied=False,
    )
    for i, (b, s, dropout) in enumerate([(1, 64, False), (3, 200, True)]):
        config = Config(
            model="gpt2",
            B=b,
            S=s,
            D=96,
            NH=4,
            V=500,
            L=2,
            SMAX=256,
            amp=True,
            dropout=dropout,
            tied=False,
        )
        totals = report.at(config).totals
        assert {k: int(out[k][i]) for k in totals} == dict(totals)


def test_latex_document_for_gpt2(capsys):
    argv = ["latex", "--arch", "gpt2", "--model", "gpt2", "--what", "document"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert r"S_{\max}" in text and r"\mathrm{TIED}" in text


def test_tensor_parallel_shares():
    from symmem.parallel import Layout, per_rank

    report = build_report("cuda", model="gpt2")
    config = Config(model="gpt2", B=2, S=64, D=96, NH=4, V=500, L=2, SMAX=64, amp=True)
    one = per_rank(report, Layout())
    values = config.values()
    for key in ("activations", "cache", "params", "total"):
        assert one.totals[key].xreplace(values) == report.at(config).totals[key]
    two = per_rank(report, Layout(tp=2))
    assert two.totals["cache"].xreplace(values) * 2 == report.at(config).totals["cache"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--NKV", "2"], "--NKV does not apply to gpt2"),
        (["--bias"], "--bias does not apply to gpt2"),
        (["--SMAX", "16"], "S=64 is larger than SMAX=16"),
        (["--NH", "5"], "D=96 is not divisible by NH=5"),
        (["--checkpoint", "full"], "activation checkpointing is not modelled for gpt2"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    sizes = dict(B=2, S=64, D=96, NH=4, V=500, L=2, SMAX=64)
    base = ["estimate", "--arch", "gpt2", *(f"--{k}={v}" for k, v in sizes.items())]
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_config_rejects_what_gpt2_does_not_have():
    with pytest.raises(ConfigError, match="--F does not apply to gpt2"):
        Config(model="gpt2", F=100)


def test_latex_peak_names_gpt2s_switches_and_loop():
    from symmem.render.latex import peak

    report = build_report("cuda", model="gpt2")
    text = peak(report, Config(model="gpt2", B=2, S=64, D=96, NH=4, V=500, L=2, SMAX=64))
    assert "the plain loop" in text and "TIED=1" in text and "BIAS" not in text


def test_html_names_gpt2s_switches():
    report = build_report("cuda", model="gpt2")
    html = report.at(Config(model="gpt2", B=2, S=64, D=96, NH=4, V=500, L=2, SMAX=64))._repr_html_()
    assert "tied=on" in html and "bias" not in html


@pytest.mark.slow
def test_plots_against_b_and_s_mark_what_solve_returns():
    pytest.importorskip("matplotlib")
    from symmem.plot import batch_plot, sequence_plot
    from symmem.solve import largest

    report = build_report("cuda", model="gpt2")
    config = Config(model="gpt2", B=4, S=512, D=96, NH=4, V=500, L=2, SMAX=2048, amp=True)
    for plot, symbol in ((batch_plot, "B"), (sequence_plot, "S")):
        ax = plot(report, config, budget="1GiB")
        (marker,) = [line for line in ax.get_lines() if line.get_gid() == "largest"]
        solution = largest(report, config.with_(**{symbol: None}), symbol, "1GiB")
        assert list(marker.get_xdata()) == [solution.value]
        assert max(int(x) for x in ax.get_xlim()) <= 2048


def test_solving_for_s_stops_at_the_position_table():
    from symmem.solve import largest

    report = build_report("cuda", model="gpt2")
    config = Config(model="gpt2", B=1, D=96, NH=4, V=500, L=2, SMAX=300)
    solution = largest(report, config, "S", "80GiB", quantity="total")
    assert (solution.value, solution.limited_by) == (300, "upper bound")
    assert largest(report, config, "S", "80GiB", quantity="total", upper=100).value == 100
