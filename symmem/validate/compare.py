"""Compare a prediction with a measurement, term by term and per total.

This module needs no torch: a measurement can come from :func:`symmem.validate.measure` or from
users' own tooling, as long as it has ``terms`` (with ``name``, ``module``, ``kind``, ``nbytes``),
``totals`` and ``param_count``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from symmem.report import TOTALS, Estimate
from symmem.units import format_bytes

__all__ = ["Comparison", "Row", "assert_matches", "compare"]


class _MeasuredTerm(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def module(self) -> str: ...
    @property
    def nbytes(self) -> int: ...


class _Measurement(Protocol):
    @property
    def terms(self) -> Iterable[_MeasuredTerm]: ...
    @property
    def totals(self) -> Mapping[str, int]: ...
    @property
    def param_count(self) -> int: ...


@dataclass(frozen=True)
class Row:
    """One line of a comparison.

    Attributes:
        name: Term name, ``total: <key>`` or ``param_count``.
        module: The term's module ("" for totals).
        predicted: symmem's bytes, or ``None`` when symmem has no such term.
        measured: PyTorch's bytes, or ``None`` when the measurement has no such term.
    """

    name: str
    module: str
    predicted: int | None
    measured: int | None

    @property
    def ok(self) -> bool:
        return self.predicted == self.measured


@dataclass(frozen=True)
class Comparison:
    """Every term and total of a prediction beside its measurement."""

    terms: tuple[Row, ...]
    totals: tuple[Row, ...]

    @property
    def rows(self) -> tuple[Row, ...]:
        return self.terms + self.totals

    @property
    def match(self) -> bool:
        return all(row.ok for row in self.rows)

    def differences(self) -> list[Row]:
        return [row for row in self.rows if not row.ok]

    def phase_rows(self) -> dict[str, dict[str, Row]]:
        """The rows of the training step, by phase then ``start``, ``peak`` or ``end``; empty
        when the step was not measured."""
        phases: dict[str, dict[str, Row]] = {}
        for row in self.totals:
            if row.name.startswith(_STEP):
                phase, point = row.name.removeprefix(_STEP).rsplit(" ", 1)
                phases.setdefault(phase, {})[point] = row
        return phases

    def table(self) -> str:
        """A side-by-side table; differing rows are marked with ``<-- differs``."""
        header = ("term", "module", "predicted", "measured", "")
        lines = [header]
        for row in self.rows:
            mark = "" if row.ok else "<-- differs"
            count = row.name == "param_count"
            lines.append(
                (
                    row.name,
                    row.module,
                    _cell(row.predicted, count),
                    _cell(row.measured, count),
                    mark,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(4)]
        out = []
        for line in lines:
            cells = [
                line[0].ljust(widths[0]),
                line[1].ljust(widths[1]),
                line[2].rjust(widths[2]),
                line[3].rjust(widths[3]),
                line[4],
            ]
            out.append("  ".join(cells).rstrip())
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "differences": [
                {
                    "name": r.name,
                    "module": r.module,
                    "predicted": r.predicted,
                    "measured": r.measured,
                }
                for r in self.differences()
            ],
        }


_STEP = "step: "


def _cell(value: int | None, count: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if count else f"{value:,} ({format_bytes(value)})"


def compare(estimate: Estimate, measurement: _Measurement) -> Comparison:
    """Match terms by ``(name, module)`` and totals by key; terms worth 0 bytes are absent."""
    predicted = {(t.name, t.module): b for t, b in estimate.terms()}
    measured = {(t.name, t.module): t.nbytes for t in measurement.terms}
    keys = list(dict.fromkeys([*predicted, *measured]))
    terms = tuple(Row(n, m, predicted.get((n, m)), measured.get((n, m))) for n, m in keys)
    totals = (
        *(Row(f"total: {k}", "", estimate.totals[k], measurement.totals.get(k)) for k in TOTALS),
        Row("param_count", "", estimate.param_count, measurement.param_count),
        *_phase_rows(estimate, getattr(measurement, "timeline", None)),
    )
    return Comparison(terms, totals)


def _phase_rows(estimate: Estimate, timeline: Any) -> list[Row]:
    """Start, peak and end of each phase of the training step, when the step was measured."""
    if timeline is None:
        return []
    measured = {p.name: (p.start, p.peak, p.end) for p in timeline.phases}
    rows = []
    for name, start, end, peak in estimate.timeline:
        got = measured.get(name, (None, None, None))
        for what, mine, theirs in zip(
            ("start", "peak", "end"), (start, peak, end), got, strict=True
        ):
            rows.append(Row(f"{_STEP}{name} {what}", "", mine, theirs))
    return rows


def assert_matches(estimate: Estimate, measurement: _Measurement) -> None:
    """Raise ``AssertionError`` listing every differing term and total, for users' own tests.

    >>> from symmem import Config, build_report
    >>> from types import SimpleNamespace
    >>> estimate = build_report("cpu").at(Config(B=1, S=4, D=8, NH=2, V=16, L=1))
    >>> fake = SimpleNamespace(terms=[], totals=dict(estimate.totals), param_count=0)
    >>> assert_matches(estimate, fake)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: prediction and measurement differ in ... rows:
    idx (GPT.forward): predicted 32, measured None
    ...
    param_count: predicted 952, measured 0
    """
    differences = compare(estimate, measurement).differences()
    if differences:
        lines = [
            f"{r.name}{f' ({r.module})' if r.module else ''}: "
            f"predicted {r.predicted}, measured {r.measured}"
            for r in differences
        ]
        raise AssertionError(
            f"prediction and measurement differ in {len(lines)} rows:\n" + "\n".join(lines)
        )
