"""Memory per rank: ZeRO, tensor and sequence parallelism, pipeline stages (symmem.parallel)."""

from __future__ import annotations

import json

import pytest
import sympy

from symmem import Config, build_report
from symmem.cli import main
from symmem.errors import BudgetError, ConfigError
from symmem.parallel import SEQ, TP, WHOLE, Layout, per_rank
from symmem.solve import fewest, largest_per_rank
from symmem.symbols import AMP, BIAS, DROPOUT, B, D, L, N, P, S, T

CONFIGS = (
    Config.notebook(),
    Config(B=3, S=40, D=64, NH=4, V=101, L=2, bias=True),
    Config(B=1, S=129, D=96, NH=2, V=97, L=3, amp=True, dropout=True, bias=True),
)


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_one_gpu_layout_is_the_report_itself(platform: str, config: Config) -> None:
    report = build_report(platform)
    one = report.at(config).totals
    ranks = per_rank(report, Layout()).at(config)
    assert dict(ranks.totals) == {key: one[key] for key in ranks.totals}


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_one_rank_of_each_count_is_one_gpu(config: Config) -> None:
    report = build_report("cuda")
    one = per_rank(report, Layout()).at(config).totals
    layout = Layout(zero=3, dp=N, tp=T, sp=True, pp=1)
    assert dict(per_rank(report, layout).at(config, dp=1, tp=1).totals) == dict(one)


def test_sequence_parallelism_splits_every_saved_tensor_of_a_block() -> None:
    report = build_report("cuda")
    one = per_rank(report, Layout()).totals["block"]
    split = per_rank(report, Layout(tp=T, sp=True)).totals["block"]
    assert sympy.simplify(split - one / T) == 0


def test_tensor_parallelism_keeps_the_layernorms_and_masks_whole() -> None:
    report = build_report("cuda", attention="math")
    ranks = per_rank(report, Layout(tp=T))
    by_module = {(r.term.module, r.term.name): r for r in ranks.terms}
    ln = by_module[("transformer.h.*.ln_1", "NativeLayerNormBackward0-input")]
    assert ln.split == SEQ and ln.formula == L * ln.term.layer_formula
    softmax = by_module[("transformer.h.*.attn", "SafeSoftmaxBackward0-result")]
    assert softmax.split == TP and sympy.simplify(softmax.formula - softmax.term.formula / T) == 0
    indices = by_module[("transformer.wpe", "EmbeddingBackward0-indices")]
    assert indices.split == WHOLE and indices.formula == indices.term.formula
    # The whole part of a block under TP is what SP splits: TP block - SP block = whole·(1 - 1/t).
    whole = sum(
        (r.term.layer_formula for r in ranks.terms if r.term.per_layer and r.split == SEQ),
        sympy.Integer(0),
    )
    with_sp = per_rank(report, Layout(tp=T, sp=True)).totals["block"]
    assert sympy.simplify(ranks.totals["block"] - with_sp - whole * (1 - 1 / T)) == 0


def test_zero_stages_split_state_one_kind_at_a_time() -> None:
    report = build_report("cuda")
    config = Config.notebook().with_(bias=True)
    one = per_rank(report, Layout()).at(config).totals
    previous = dict(one)
    for stage, kind in ((1, "optimizer"), (2, "grads"), (3, "params")):
        totals = per_rank(report, Layout(zero=stage, dp=8)).at(config).totals
        assert totals[kind] < previous[kind]
        # ⌈x/8⌉ per buffer: at most one byte over x/8 for each of the kind's terms.
        assert 0 <= totals[kind] * 8 - one[kind] < 8 * 3
        assert totals["activations"] == one["activations"]
        previous = dict(totals)


def test_pipeline_first_stage_holds_embeddings_and_p_micro_batches() -> None:
    report = build_report("cuda")
    ranks = per_rank(report, Layout(pp=P))
    assert ranks.totals["loss"] == 0 and ranks.totals["logits"] == 0
    modules = {r.term.module for r in ranks.terms}
    assert "lm_head" not in modules and "transformer.ln_f" not in modules
    # Activations of L/p blocks for each of p micro-batches in flight: L blocks' worth.
    one = per_rank(report, Layout())
    per_block = ranks.totals["block"]
    assert sympy.simplify(per_block - one.totals["block"]) == 0
    config = Config.notebook()
    four = ranks.at(config, pp=4).totals
    assert four["params"] < one.at(config).totals["params"]


def test_layout_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="ZeRO stage"):
        Layout(zero=4)
    with pytest.raises(ConfigError, match="whole number >= 1"):
        Layout(tp=0)
    with pytest.raises(ConfigError, match="sequence parallelism"):
        Layout(sp=True)
    ranks = per_rank(build_report("cuda"), Layout(tp=T))
    with pytest.raises(ConfigError, match="give a value for t"):
        ranks.at(Config.notebook())
    with pytest.raises(ConfigError, match="whole number of bytes"):
        ranks.at(Config.notebook(), tp=3)  # 3 does not divide the 4 heads


def test_fewest_ranks_fit_and_one_fewer_does_not() -> None:
    report = build_report("cuda")
    config = Config(B=8, S=2048, D=8192, NH=64, V=51200, L=80, amp=True)
    answer = fewest(per_rank(report, Layout(tp=T, sp=True)), config, "t", "80GiB")
    assert answer.bytes_at_value <= answer.budget_bytes
    assert answer.previous_value is not None and answer.bytes_at_previous is not None
    assert answer.bytes_at_previous > answer.budget_bytes
    assert config.NH is not None and config.NH % answer.value == 0
    zero = fewest(per_rank(report, Layout(zero=3, dp=N, tp=8, sp=True)), config, "N", "80GiB")
    assert zero.bytes_at_value <= zero.budget_bytes < (zero.bytes_at_previous or 0)
    with pytest.raises(ConfigError, match="without ZeRO"):
        fewest(per_rank(report, Layout(dp=N)), config, "N", "80GiB")
    with pytest.raises(BudgetError):
        fewest(per_rank(report, Layout(tp=T)), config, "t", "1MiB", upper=8)


def test_one_tensor_parallel_rank_with_sequence_parallelism_is_an_answer() -> None:
    """Where one rank fits, t = 1 is the answer; sequence parallelism over it splits nothing,
    so the answer's layout has none (a Layout with tp=1 and sp refuses)."""
    report = build_report("cuda")
    config = Config(B=1, S=256, D=256, NH=4, V=1000, L=2, amp=True)
    answer = fewest(per_rank(report, Layout(tp=T, sp=True)), config, "t", "80GiB")
    assert answer.value == 1 and answer.previous_value is None
    assert answer.layout == Layout(tp=1)
    assert answer.bytes_at_value == per_rank(report, Layout()).at(config).totals["total"]


def test_largest_batch_per_rank() -> None:
    report = build_report("cuda")
    config = Config(S=1024, D=1024, NH=16, V=50304, L=24, amp=True)
    ranks = per_rank(report, Layout(tp=4, sp=True, zero=1, dp=8))
    solution = largest_per_rank(ranks, config, "B", "40GiB")
    assert solution.bytes_at_value <= solution.budget_bytes < solution.bytes_at_next
    assert ranks.at(solution.config).totals["total"] == solution.bytes_at_value


def test_cli_estimate_per_rank_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["estimate", "--json", "--tp", "2", "--sp", "--zero", "2", "--dp", "4", "--pp", "2"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["per_rank"] is True
    assert data["layout"] == {"zero": 2, "dp": "4", "tp": "2", "sp": True, "pp": "2"}
    assert (
        sum(t["bytes"] for t in data["terms"] if t["location"] == "device")
        == (data["totals"]["total"])
    )
    block = per_rank(build_report("cuda"), Layout(tp=2, sp=True, zero=2, dp=4, pp=2))
    assert data["totals"]["block"] == block.at(Config.notebook()).totals["block"]


def test_cli_solve_for_gpus_and_symbolic_latex(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["solve", "--for", "t", "--budget", "80GiB", "--sp", "--json"]
    argv += ["--B", "8", "--S", "2048", "--D", "8192", "--NH", "64", "--V", "51200", "--L", "80"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["symbol"] == "t" and data["bytes_at_value"] <= data["budget_bytes"]
    assert main(["latex", "--what", "block", "--tp", "t", "--sp", "--symbols", "paper"]) == 0
    assert r"{t}" in capsys.readouterr().out
    assert main(["estimate", "--tp", "two"]) == 2
    assert "--tp takes a whole number or the symbol t" in capsys.readouterr().err
    assert main(["latex", "--what", "table", "--tp", "2"]) == 2


def test_rank_formulas_keep_the_switches_symbolic() -> None:
    block = per_rank(build_report("cuda"), Layout(tp=T)).totals["block"]
    assert {AMP, DROPOUT, T} <= block.free_symbols
    params = per_rank(build_report("cuda"), Layout(tp=T)).totals["params"]
    assert BIAS in params.free_symbols


def test_sweep_ranks_equals_each_rank_estimate() -> None:
    from symmem.sweep import sweep_ranks

    ranks = per_rank(build_report("cuda"), Layout(zero=2, dp=N, tp=T, sp=True))
    out = sweep_ranks(
        ranks, grid=True, B=[1, 4], S=256, D=512, NH=8, V=1024, L=4, dp=[2, 3], tp=[1, 2]
    )
    assert out["total"].shape == (2, 2, 2)
    for i, b in enumerate((1, 4)):
        for j, dp in enumerate((2, 3)):
            for k, tp in enumerate((1, 2)):
                config = Config(B=b, S=256, D=512, NH=8, V=1024, L=4)
                expected = ranks.at(config, dp=dp, tp=tp).totals
                assert {key: out[key][i, j, k] for key in expected} == dict(expected)
    with pytest.raises(ConfigError, match="tp must be positive"):
        sweep_ranks(ranks, B=1, S=256, D=512, NH=8, V=1024, L=4, dp=2, tp=0)


def test_checkpointed_blocks_split_their_inputs_not_their_rng_states() -> None:
    report = build_report("cuda", checkpoint="full")
    ranks = per_rank(report, Layout(tp=T, sp=True))
    split = {r.term.name: r.split for r in ranks.terms if r.term.module == "transformer.h.*"}
    assert split["CheckpointFrame-saved_args"] == SEQ
    assert split["CheckpointFrame-fwd_cpu_state"] == WHOLE
    # Full recomputation with sequence parallelism keeps 1/t of each block input (fp32 here).
    assert sympy.simplify(ranks.totals["block"] - 4 * B * S * D / T) == 0
