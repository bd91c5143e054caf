"""``symmem latex``: what each --what prints, and exit status 2 for bad input."""

from __future__ import annotations

import pytest

from symmem import Config, build_report
from symmem.cli import main
from symmem.render import latex

SMALL = ["--B", "2", "--S", "8", "--D", "4", "--NH", "2", "--V", "10", "--L", "1"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["latex", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_default_is_the_document_of_the_notebook_config(capsys):
    status, out, err = run(capsys)
    assert (status, err) == (0, "")
    assert out == latex.document(build_report("cuda"), Config.notebook())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--what", "term", "--term", "idx"],
            "$8 B S$  % idx (GPT.forward)\n",
        ),
        (
            [
                "--what",
                "term",
                "--term",
                "MmBackward0-mat2",
                "--module",
                "lm_head",
                "--symbols",
                "paper",
            ],
            r"$2 \, \mathrm{AMP} \, h v$  % MmBackward0-mat2 (lm_head)" + "\n",
        ),
        (
            ["--what", "total", "--total", "loss", "--fix-switches", "--amp"],
            r"M_{\mathrm{loss}} = 6 B S V + 4" + "\n",
        ),
        (
            ["--what", "total", "--total", "loss", "--fix-switches", "--no-amp", *SMALL],
            r"M_{\mathrm{loss}} = 4 B S V + 4" + "\n",
        ),
    ],
)
def test_exact_output(capsys, argv, expected):
    status, out, err = run(capsys, *argv)
    assert (status, out, err) == (0, expected, "")


def test_each_kind_is_the_library_function(capsys):
    report = build_report("cpu", "math")
    config = Config(B=2, S=8, D=4, NH=2, V=10, L=1, dropout=True)
    flags = ["--platform", "cpu", "--attention", "math", *SMALL, "--dropout"]
    cases = {
        "block": latex.total(report, "block", symbols="paper", collect="S"),
        "total": latex.total(report, "total", symbols="paper", collect="S"),
        "breakdown": latex.breakdown(report, "block", by="module", symbols="paper"),
        "table": latex.table(report, config, "total", by="module", symbols="paper"),
        "document": latex.document(report, config, symbols="paper"),
    }
    for what, expected in cases.items():
        extra = ["--collect", "S"] if what in ("block", "total") else []
        status, out, _ = run(
            capsys, *flags, "--what", what, "--symbols", "paper", "--by", "module", *extra
        )
        assert status == 0
        assert out.rstrip("\n") == expected.rstrip("\n"), what
    status, out, _ = run(capsys, *flags, "--what", "term")
    assert status == 0
    assert len(out.splitlines()) == len(report.terms)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--symbols", "megatron"], "unknown symbol set 'megatron': choose default or paper"),
        (["--what", "breakdown", "--total", "memory"], "unknown total 'memory'"),
        (["--what", "total", "--total", "memory"], "unknown total 'memory'"),
        (["--what", "term", "--term", "nope"], "no term named 'nope'"),
        (["--what", "term", "--term", "idx", "--module", "lm_head"], "in module 'lm_head'"),
        (["--attention", "flash", "--no-amp", *SMALL], "flash"),
        (["--B", "0"], "B must be positive"),
        (["--json"], "--json does not apply"),
    ],
)
def test_bad_input_exits_2(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert err.startswith("symmem: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--what", "paper"], "argument --what: invalid choice: 'paper'"),
        (["--by", "layer"], "argument --by: invalid choice: 'layer'"),
        (["--collect", "AMP"], "argument --collect: invalid choice: 'AMP'"),
    ],
)
def test_unknown_choices_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["latex", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
