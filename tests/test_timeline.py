"""The live-memory timeline of a training step, cross-checked with the saved-tensor measurement.

At the boundaries between phases no temporaries are alive, so live memory there is a sum of terms
that symmem already models exactly; the timeline must agree with them to the byte.
"""

from __future__ import annotations

import pytest

from symmem import Config, build_report
from tests.conftest import needs_torch

pytestmark = needs_torch

CONFIGS = [
    Config(B=2, S=40, D=64, NH=4, V=101, L=1),
    Config(B=1, S=37, D=60, NH=4, V=97, L=2, amp=True, dropout=True, bias=True),
    Config(B=3, S=33, D=48, NH=1, V=64, L=3, dropout=True),
    Config(B=2, S=17, D=30, NH=5, V=50, L=2, amp=True),
]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("optimizer", ["forloop", "foreach"])
def test_phase_boundaries_equal_modelled_terms(config, optimizer):
    from symmem.validate.timeline import PHASES, measure_timeline

    timeline = measure_timeline(config, optimizer=optimizer)
    totals = build_report("cpu", "default", optimizer).at(config).totals
    # Between steps: parameters, AdamW state, the batch, the last logits and the loss scalar.
    between = totals["params"] + totals["optimizer"] + totals["inputs"] + totals["logits"] + 4
    # What autograd saves, and the divisor of loss / gradient_accumulation_steps: a Python int
    # wrapped as a 0-dim int64 (8 B, made outside any operator) that DivBackward0 holds.
    saved = totals["activations"] + totals["loss"] + 8
    assert [p.name for p in timeline.phases] == list(PHASES)
    assert timeline.phase("forward").start == between
    assert timeline.phase("forward").end == between + saved  # the old logits and loss are gone
    assert timeline.phase("next_batch").end == between + saved + totals["inputs"]
    assert timeline.phase("backward").end == between + totals["grads"]  # graph freed
    assert timeline.phase("step").end == between + totals["grads"]
    assert timeline.phase("zero_grad").end == between
    for phase in timeline.phases:
        assert phase.peak >= max(phase.start, phase.end)
    assert timeline.peak == max(p.peak for p in timeline.phases)
    assert timeline.phase("forward").at == "nll_loss_forward"  # the loss ends the forward


def test_validate_timeline_json(capsys):
    import json

    from symmem.cli import main

    argv = ["validate", "--B", "2", "--S", "17", "--D", "24", "--NH", "3", "--V", "50", "--L", "1"]
    assert main([*argv, "--timeline", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    phases = data["measured"]["timeline"]
    assert [p["phase"] for p in phases] == [
        "forward",
        "next_batch",
        "backward",
        "clip",
        "step",
        "zero_grad",
    ]
    totals = data["predicted"]["totals"]
    between = totals["params"] + totals["optimizer"] + totals["inputs"] + totals["logits"] + 4
    assert phases[0]["start"] == between == phases[-1]["end"]


def test_check_script_records_timelines(tmp_path):
    import json

    from symmem.validate.cuda_check import main

    assert main(["--device", "cpu", "--grid", "quick", "--out", str(tmp_path), "--timeline"]) == 0
    cases = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    matched = [c for c in cases if c["status"] == "match"]
    assert matched and all(len(c["timeline"]) == 6 for c in matched)
