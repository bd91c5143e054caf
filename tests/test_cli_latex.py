"""``symmem latex``: what each --what prints, and exit status 2 for bad input."""

from __future__ import annotations

import os
import shutil

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
        "peak": latex.peak(report, config, symbols="paper"),
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
        (["--what", "peak", "--pdf", "x.pdf"], "--pdf compiles the whole document"),
        (["--what", "peak", "--tp", "2"], "the peak of a step is not derived for several GPUs"),
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


def test_peak_is_the_library_function_at_the_config(capsys):
    status, out, err = run(capsys, "--what", "peak", *SMALL, "--amp")
    assert (status, err) == (0, "")
    config = Config(B=2, S=8, D=4, NH=2, V=10, L=1, amp=True)
    assert out == latex.peak(build_report("cuda"), config)
    estimate = build_report("cuda").at(config)
    assert f"$M_{{\\mathrm{{peak}}}}$ = {estimate.totals['peak']:,} B" in out
    assert f"that is {estimate.totals['max_memory_allocated']:,} B" in out


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")
def test_pdf_writes_the_compiled_document(capsys, tmp_path):
    target = tmp_path / "memory.pdf"
    status, out, err = run(capsys, "--symbols", "paper", "--pdf", str(target))
    assert (status, err) == (0, "")
    assert out.startswith(f"wrote {target}: ") and out.endswith(" (pdflatex ran 2 times)\n")
    assert target.read_bytes().startswith(b"%PDF-")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/memory.pdf", "cannot write {tmp}/missing/memory.pdf: no folder {tmp}/missing"),
        ("", "cannot write {tmp}: it is a folder"),
    ],
)
def test_pdf_to_a_path_that_cannot_be_written_exits_2(capsys, tmp_path, where, message):
    target = str(tmp_path / where) if where else str(tmp_path)
    status, out, err = run(capsys, "--pdf", target)
    assert (status, out) == (2, "")
    assert err == f"symmem: error: {message.format(tmp=tmp_path)}\n"


def test_pdf_without_pdflatex_says_how_to_install_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no pdflatex here
    assert shutil.which("pdflatex") is None and os.environ["PATH"] == str(tmp_path)
    status, out, err = run(capsys, "--pdf", str(tmp_path / "memory.pdf"))
    assert (status, out) == (2, "")
    assert err.startswith("symmem: error: --pdf needs pdflatex, which is not on PATH: install")
    assert "apt-get install texlive-latex-base texlive-latex-recommended" in err
    assert err.count("\n") == 1 and not (tmp_path / "memory.pdf").exists()
