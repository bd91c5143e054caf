r"""LaTeX for papers and notebooks: formulas, totals, breakdowns, tables, whole documents.

Every function returns a string of LaTeX, printed by SymPy's LaTeX printer with the names of a
:class:`SymbolSet` (``default``: ``B, S, D, n_head, V, L``; ``paper``: ``b, s, h, a, v, L`` as in
the Megatron-LM papers). Products put the 0/1 switches first, then the sizes, then what is left
(bytes per element, a padded length), and a polynomial in the switches starts with its constant,
so ``(4 - 2 AMP)`` reads "4 bytes, 2 fewer under AMP".

>>> from symmem.symbols import AMP, BIAS, B, S, D
>>> formula(BIAS * B * S * D * (4 - 2 * AMP))
'\\mathrm{BIAS} \\, B S D \\left(4 - 2 \\, \\mathrm{AMP}\\right)'
>>> formula(BIAS * B * S * D * (4 - 2 * AMP), symbols="paper")
'\\mathrm{BIAS} \\, b s h \\left(4 - 2 \\, \\mathrm{AMP}\\right)'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import sympy
from sympy.printing.latex import LatexPrinter

from symmem.allocator import BLOCK
from symmem.config import Config
from symmem.errors import ConfigError
from symmem.kinds import SUMS
from symmem.parallel import RankReport
from symmem.report import CATEGORIES, TOTALS, Report, Term
from symmem.simplify import paper_form
from symmem.step import StepPhase, StepRun, prune
from symmem.symbols import (
    AMP,
    BIAS,
    DROPOUT,
    LATEX_NAMES,
    NH,
    NKV,
    SIZES,
    SWITCHES,
    SYMBOLS,
    TIED,
    B,
    D,
    F,
    L,
    S,
    V,
)
from symmem.units import format_bytes

__all__ = [
    "KINDS",
    "MEANINGS",
    "SYMBOL_SETS",
    "SymbolSet",
    "breakdown",
    "document",
    "formula",
    "inline",
    "peak",
    "report_repr_latex",
    "symbol_set",
    "table",
    "term_repr_latex",
    "total",
    "totals",
]

#: What ``symmem latex --what`` can render.
KINDS = ("term", "block", "total", "breakdown", "table", "peak", "document")

#: What each symbol stands for, for legends.
MEANINGS: Mapping[sympy.Symbol, str] = MappingProxyType(
    {
        B: "batch size (sequences per step)",
        S: "sequence length",
        D: "hidden size",
        NH: "attention heads",
        V: "vocabulary size",
        L: "transformer blocks",
        NKV: "key/value heads",
        F: "the MLP's hidden width",
        AMP: "1 under autocast mixed precision (16-bit compute), else 0",
        DROPOUT: "1 when the dropout probability is above zero, else 0",
        BIAS: "1 when Linear and LayerNorm layers have biases, else 0",
        TIED: "1 when the input and output embeddings share one weight, else 0",
    }
)


@dataclass(frozen=True)
class SymbolSet:
    """How each symbol prints in LaTeX.

    Attributes:
        name: A short name (``default``, ``paper``, or ``custom``).
        names: The LaTeX of every symbol of :data:`symmem.symbols.SYMBOLS`.
        source: Where the names come from, for a legend.

    >>> SYMBOL_SETS["paper"].with_names(NH="n").names[NH]
    'n'
    """

    name: str
    names: Mapping[sympy.Symbol, str]
    source: str = ""

    def __post_init__(self) -> None:
        missing = [str(s) for s in SYMBOLS.values() if not self.names.get(s)]
        if missing:
            raise ConfigError(f"symbol set {self.name!r} has no LaTeX for {', '.join(missing)}")
        printed = list(self.names.values())
        repeated = sorted({n for n in printed if printed.count(n) > 1})
        if repeated:
            raise ConfigError(
                f"symbol set {self.name!r} prints several symbols as {', '.join(repeated)}"
            )
        object.__setattr__(self, "names", MappingProxyType(dict(self.names)))

    def with_names(self, **names: str) -> SymbolSet:
        """A copy with some symbols renamed, by symbol name: ``with_names(B="b")``."""
        unknown = sorted(set(names) - set(SYMBOLS))
        if unknown:
            raise ConfigError(
                f"unknown symbols {', '.join(unknown)}: choose from {', '.join(SYMBOLS)}"
            )
        changed = {SYMBOLS[k]: v for k, v in names.items()}
        return SymbolSet("custom", {**self.names, **changed}, self.source)


#: The named symbol sets: symmem's own names and those of the Megatron-LM papers.
SYMBOL_SETS: Mapping[str, SymbolSet] = MappingProxyType(
    {
        "default": SymbolSet("default", LATEX_NAMES, "symmem"),
        "paper": SymbolSet(
            "paper",
            {**LATEX_NAMES, B: "b", S: "s", D: "h", NH: "a", V: "v", L: "L"},
            "Korthikanti et al., Reducing Activation Recomputation in Large Transformer "
            "Models (2022)",
        ),
    }
)

#: What ``symbols=`` accepts: a set's name, a set, or names by symbol name over ``default``.
Symbols = str | SymbolSet | Mapping[str, str]
#: What ``switches=`` accepts: a config (its switches are used) or switch values.
Switches = Config | Mapping[sympy.Symbol, int] | None


def symbol_set(symbols: Symbols = "default") -> SymbolSet:
    """The symbol set ``symbols`` names (or is).

    >>> symbol_set({"B": "b"}).names[B]
    'b'
    >>> symbol_set("megatron")
    Traceback (most recent call last):
    ...
    symmem.errors.ConfigError: unknown symbol set 'megatron': choose default or paper
    """
    if isinstance(symbols, SymbolSet):
        return symbols
    if isinstance(symbols, str):
        if symbols not in SYMBOL_SETS:
            raise ConfigError(f"unknown symbol set {symbols!r}: choose {' or '.join(SYMBOL_SETS)}")
        return SYMBOL_SETS[symbols]
    return SYMBOL_SETS["default"].with_names(**symbols)


# -- printing ---------------------------------------------------------------------------------


class _Printer(LatexPrinter):  # type: ignore[misc]
    """SymPy's LaTeX printer, with products and switch polynomials in the order papers use."""

    def _as_ordered_terms(self, expr: sympy.Expr, order: Any = None) -> list[sympy.Expr]:
        terms = list(sympy.Add.make_args(expr))
        if expr.is_Add and expr.free_symbols <= set(SWITCHES):
            # Constant first, then the switches in their own order: 64 - 28 AMP + 2 DROPOUT.
            return sorted(terms, key=_switch_key)
        ordered: list[sympy.Expr] = super()._as_ordered_terms(expr, order=order)
        try:
            keys = {term: _size_key(term) for term in ordered}
        except sympy.PolynomialError:
            return ordered
        # Highest degree in the sizes first; a plain number last.
        return sorted(ordered, key=lambda term: (keys[term], not term.free_symbols))

    def _print_Mul(self, expr: sympy.Expr) -> str:
        coeff, _ = expr.as_coeff_Mul()
        if coeff.is_Integer and coeff < 0:
            return "- " + self._print_Mul(-expr)
        factors = _arranged_factors(expr)
        if factors is None:
            printed: str = super()._print_Mul(expr)
            return printed
        tex = ""
        for i, factor in enumerate(factors):
            if i:
                # A thin space around a switch: 2 AMP B S, not 2AMPBS.
                near_switch = factor in SWITCHES or factors[i - 1] in SWITCHES
                tex += r" \, " if near_switch else " "
            printed = self._print(factor)
            if isinstance(factor, sympy.Add | sympy.Piecewise):
                printed = rf"\left({printed}\right)"
            tex += printed
        return tex


def _size_key(term: sympy.Expr) -> tuple[int, ...]:
    """Order of a term of a polynomial in the sizes: by degree, then B before S before D...

    A padded length ``ceiling(S/32)`` counts as S, a ``Piecewise`` as its first branch.
    """
    plain = term.replace(
        lambda e: isinstance(e, sympy.ceiling | sympy.floor), lambda e: e.args[0]
    ).replace(lambda e: isinstance(e, sympy.Piecewise), lambda e: e.args[0][0])
    monomials = sympy.Poly(plain, *SIZES).monoms()
    top = max(monomials, key=lambda m: (sum(m), m))
    return (-sum(top), *(-e for e in top))


def _switch_key(term: sympy.Expr) -> tuple[int, ...]:
    """Order of a term of a switch polynomial: constant, then by the switches it contains."""
    return (len(term.free_symbols), *(-int(term.has(x)) for x in SWITCHES))


def _arranged_factors(expr: sympy.Expr) -> list[sympy.Expr] | None:
    """Coefficient, switch factors (X or 1 - X), sizes in SIZES order, the rest; or None.

    None where the product is not a plain monomial times polynomials (negative or fractional
    coefficients, denominators): SymPy's own layout is right for those.
    """
    coeff, rest = expr.as_coeff_Mul()
    if not (coeff.is_Integer and coeff > 0):
        return None
    switches, sizes, others = [], [], []
    for factor in sympy.Mul.make_args(rest):
        base, exponent = factor.as_base_exp()
        if not (exponent.is_Integer and exponent > 0):
            return None
        if factor in SWITCHES or (factor.is_Add and _is_indicator(factor)):
            switches.append(factor)
        elif base in SIZES:
            sizes.append(factor)
        else:
            others.append(factor)
    sizes.sort(key=lambda f: SIZES.index(f.as_base_exp()[0]))
    head = [] if coeff == 1 else [coeff]
    return [*head, *sorted(switches, key=_indicator_key), *sizes, *others]


def _is_indicator(expr: sympy.Expr) -> bool:
    """Whether ``expr`` is ``1 - X`` for a switch X."""
    return any(sympy.expand(expr - (1 - x)) == 0 for x in SWITCHES)


def _indicator_key(expr: sympy.Expr) -> int:
    return next(i for i, x in enumerate(SWITCHES) if expr.has(x))


def _print(expr: sympy.Expr, names: SymbolSet) -> str:
    return str(_Printer({"symbol_names": dict(names.names)}).doprint(expr))


def _summands(expr: sympy.Expr, names: SymbolSet) -> list[str]:
    """The terms of a sum as printed, each after its sign: ``["a", "+ b", "- c"]``."""
    printer = _Printer({"symbol_names": dict(names.names)})
    out = []
    for i, term in enumerate(printer._as_ordered_terms(expr)):
        sign = "+ " if i else ""
        if term.could_extract_minus_sign():
            sign, term = "- ", -term
        out.append(sign + printer.doprint(term))
    return out


def _switch_values(switches: Switches) -> dict[sympy.Symbol, sympy.Integer]:
    if switches is None:
        return {}
    values = switches.switches() if isinstance(switches, Config) else switches
    unknown = [str(s) for s in values if s not in SWITCHES]
    if unknown:
        raise ConfigError(f"not switches: {', '.join(unknown)}")
    for symbol, value in values.items():
        if value not in (0, 1):
            raise ConfigError(f"switch {symbol} must be 0 or 1, got {value!r}")
    return {s: sympy.Integer(int(v)) for s, v in values.items()}


def _fixed(expr: sympy.Expr, switches: Switches) -> sympy.Expr:
    values = _switch_values(switches)
    if not values:
        return expr
    fixed = expr.xreplace(values)
    return fixed if fixed.has(sympy.Max) else paper_form(fixed)


def _text(text: str) -> str:
    """``text`` safe in LaTeX's text mode."""
    special = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(special.get(c, c) for c in text)


def _lhs(key: str) -> str:
    return rf"M_{{\mathrm{{{_text(key)}}}}}"


# -- one expression ---------------------------------------------------------------------------


def formula(
    item: Term | sympy.Expr,
    *,
    symbols: Symbols = "default",
    switches: Switches = None,
    per_layer: bool = False,
) -> str:
    r"""The LaTeX of a term's bytes (whole model, or one block's with ``per_layer``) or of an
    expression, without math delimiters.

    >>> from symmem import build_report
    >>> loss = build_report("cuda").total("loss")
    >>> formula(loss)
    'B S V \\left(4 + 2 \\, \\mathrm{AMP}\\right) + 4'
    >>> formula(loss, switches={AMP: 1}, symbols="paper")
    '6 b s v + 4'
    """
    if isinstance(item, Term):
        expr = item.layer_formula if per_layer and item.per_layer else item.formula
    else:
        expr = sympy.sympify(item)
    return _print(_fixed(expr, switches), symbol_set(symbols))


def inline(
    item: Term | sympy.Expr | Report,
    *,
    symbols: Symbols = "default",
    switches: Switches = None,
) -> str:
    r"""An inline formula, ``$...$``: a term's bytes, an expression, or a report's total.

    >>> from symmem.symbols import B, S
    >>> inline(8 * B * S)
    '$8 B S$'
    """
    expr = item.total("total") if isinstance(item, Report) else item
    return f"${formula(expr, symbols=symbols, switches=switches)}$"


def total(
    report: Report | RankReport,
    key: str = "total",
    *,
    symbols: Symbols = "default",
    switches: Switches = None,
    collect: str | None = None,
) -> str:
    r"""``M_key = ...``: a total in paper form (a polynomial in the sizes whose coefficients
    show the switches), or collected in powers of one size with ``collect``. A rank report
    (:func:`symmem.parallel.per_rank`) gives the total on one rank, in N, t and p as well.

    >>> from symmem import build_report
    >>> total(build_report("cuda"), "inputs")
    'M_{\\mathrm{inputs}} = 16 B S'
    """
    expr = _total_expr(report, key, switches, collect)
    return f"{_lhs(key)} = {_print(expr, symbol_set(symbols))}"


def _total_expr(
    report: Report | RankReport, key: str, switches: Switches, collect: str | None = None
) -> sympy.Expr:
    if key not in report.totals:
        raise ConfigError(f"unknown total {key!r}: choose one of {', '.join(report.totals)}")
    expr = _fixed(report.total(key), switches)
    if collect is None:
        return expr
    if collect not in SYMBOLS or SYMBOLS[collect] not in SIZES:
        sizes = ", ".join(str(s) for s in SIZES)
        raise ConfigError(f"cannot collect in {collect!r}: choose one of {sizes}")
    x = SYMBOLS[collect]
    powers = sympy.collect(sympy.expand(expr), x, evaluate=False)
    # x**k * (its coefficient in paper form); the part without x stays a plain sum.
    return sympy.Add(*(paper_form(c) * p for p, c in powers.items()))


def totals(
    report: Report,
    *,
    symbols: Symbols = "default",
    switches: Switches = None,
    keys: Sequence[str] | None = None,
    width: int = 80,
    environment: str = "align*",
) -> str:
    r"""Every total that is a sum of terms (or ``keys``) in one aligned environment, a long sum
    broken into lines of about ``width`` characters (as printed, not as typed).

    >>> from symmem import build_report
    >>> print(totals(build_report("cuda"), keys=["inputs", "loss"]))
    \begin{align*}
      M_{\mathrm{inputs}} &= 16 B S \\
      M_{\mathrm{loss}} &= B S V \left(4 + 2 \, \mathrm{AMP}\right) + 4
    \end{align*}
    """
    names = symbol_set(symbols)
    lines = []
    for key in keys if keys is not None else SUMS:
        first, *rest = _lines(_summands(_total_expr(report, key, switches), names), width)
        lines += [f"{_lhs(key)} &= {first}", *(rf"&\quad {line}" for line in rest)]
    return _environment(environment, lines)


def _size(tex: str) -> int:
    """About how many characters wide ``tex`` prints: its text less commands and braces."""
    return len(re.sub(r"\\[A-Za-z]+|[{}^_ ]", "", tex))


def _lines(summands: Sequence[str], width: int) -> list[str]:
    """Summands joined into lines of about ``width`` printed characters each."""
    lines: list[list[str]] = [[]]
    used = 0
    for summand in summands:
        size = _size(summand)
        if lines[-1] and used + size > width:
            lines.append([])
            used = 0
        lines[-1].append(summand)
        used += size
    return [" ".join(line) for line in lines]


def _environment(name: str, lines: Sequence[str], arguments: str = "") -> str:
    body = " \\\\\n".join(f"  {line}" for line in lines)
    return f"\\begin{{{name}}}{arguments}\n{body}\n\\end{{{name}}}"


# -- breakdowns and tables --------------------------------------------------------------------


def _terms_of(report: Report, key: str) -> tuple[list[Term], bool]:
    """The terms that add up to total ``key``, and whether they count one block (per layer)."""
    device = [t for t in report.terms if t.location == "device"]
    if key == "block":
        return [t for t in device if t.per_layer and t.kind == "activations"], True
    if key in CATEGORIES:
        return [t for t in device if t.kind == key], False
    if key == "total":
        return device, False
    if key == "host":
        return [t for t in report.terms if t.location == "host"], False
    sums = [k for k in TOTALS if k in ("block", "total", "host", *CATEGORIES)]
    if key in report.totals:
        raise ConfigError(f"total {key!r} is not a sum of terms: break down one of {sums}")
    raise ConfigError(f"unknown total {key!r}: choose one of {', '.join(sums)}")


def _rows(
    report: Report, key: str, by: str, switches: Switches
) -> list[tuple[str, str, sympy.Expr]]:
    """``(name, module, formula)`` per term or per module, zero terms left out."""
    if by not in ("term", "module"):
        raise ConfigError(f"cannot break down by {by!r}: choose term or module")
    terms, per_layer = _terms_of(report, key)
    exprs = [_fixed(t.layer_formula if per_layer else t.formula, switches) for t in terms]
    if by == "term":
        rows = [(t.name, t.module, e) for t, e in zip(terms, exprs, strict=True)]
    else:
        modules: dict[str, sympy.Expr] = {}
        for term, expr in zip(terms, exprs, strict=True):
            modules[term.module] = modules.get(term.module, sympy.Integer(0)) + expr
        rows = [("", module, paper_form(expr)) for module, expr in modules.items()]
    return [row for row in rows if row[2] != 0]


#: The least width of a breakdown's closing sum, in printed characters.
_BREAKDOWN_WIDTH = 24
#: The width of a breakdown's names in a document.
_LABELS = r"0.36\linewidth"


def breakdown(
    report: Report,
    key: str = "block",
    *,
    by: str = "term",
    symbols: Symbols = "default",
    switches: Switches = None,
    width: int | None = None,
    label_width: str | None = None,
) -> str:
    r"""An ``alignat*`` environment: total ``key`` as a sum, one line per term (or per module),
    each named on the right, then the sum in paper form, in lines of about ``width``
    characters; by default as wide as the widest term's line (at least 24 characters), so that
    the sum does not push the names to the right.

    Names are ``\text`` on one line each; with ``label_width`` (a TeX length such as
    ``0.36\linewidth``) each is set in a box that wide, in a smaller font, broken where it
    must be: how a long name stays on the page.

    >>> from symmem import build_report
    >>> print(breakdown(build_report("cuda"), "inputs"))
    \begin{alignat*}{2}
      M_{\mathrm{inputs}} &= 8 B S && \quad \text{idx (GPT.forward)} \\
      &\quad + 8 B S && \quad \text{targets (GPT.forward)} \\
      &= 16 B S
    \end{alignat*}
    """
    names = symbol_set(symbols)
    rows = _rows(report, key, by, switches)
    lines = []
    widest = _BREAKDOWN_WIDTH
    for i, (name, module, expr) in enumerate(rows):
        label = f"{name} ({module})" if name else module
        tex = _print(expr, names)
        if expr.is_Add:
            tex = rf"\left({tex}\right)"
        widest = max(widest, _size(tex))
        head = f"{_lhs(key)} &= " if i == 0 else r"&\quad + "
        lines.append(rf"{head}{tex} && \quad {_label(label, label_width)}")
    whole = paper_form(sum((expr for _, _, expr in rows), sympy.Integer(0)))
    if not rows:
        lines.append(f"{_lhs(key)} &= 0")
    elif len(rows) > 1:
        first, *rest = _lines(_summands(whole, names), widest if width is None else width)
        lines += [f"&= {first}", *(rf"&\quad {line}" for line in rest)]
    return _environment("alignat*", lines, "{2}")


def _label(text: str, width: str | None) -> str:
    """A breakdown's name: on one line, or in a box ``width`` wide that may break it (after a
    hyphen, as TeX does, and after a slash)."""
    if width is None:
        return rf"\text{{{_text(text)}}}"
    broken = _text(text).replace("/", r"/\allowbreak{}")
    return rf"\parbox[t]{{{width}}}{{\raggedright\small {broken}}}"


def table(
    report: Report,
    config: Config,
    key: str = "total",
    *,
    by: str = "term",
    symbols: Symbols = "default",
    switches: Switches = None,
    environment: str = "table",
    caption: str | None = None,
) -> str:
    r"""A booktabs table: term, module, formula and bytes at ``config`` (every size needed).

    ``environment`` is ``table`` (a float with a caption), ``tabular`` (just the table) or
    ``longtable`` (breaks across pages).
    """
    if environment not in ("table", "tabular", "longtable"):
        raise ConfigError(
            f"unknown table environment {environment!r}: choose table, tabular or longtable"
        )
    if config.missing:
        raise ConfigError(f"a table of bytes needs every size: missing {', '.join(config.missing)}")
    kernel = report.kernel_for(config)
    names = symbol_set(symbols)
    values = config.values()
    head = [r"\toprule", r"Term & Module & Formula & Bytes & \\", r"\midrule"]
    body = []
    whole = 0
    for name, module, expr in _rows(report, key, by, switches):
        nbytes = _bytes(expr, values)
        if not nbytes:
            continue
        whole += nbytes
        cells = (
            _text(name) if name else "",
            rf"\texttt{{{_text(module)}}}",
            f"${_print(expr, names)}$",
            f"{nbytes:,}",
            _text(format_bytes(nbytes)),
        )
        body.append(" & ".join(cells) + r" \\")
    foot = [
        r"\midrule",
        rf"\multicolumn{{3}}{{l}}{{{_lhs_text(key)}}} & {whole:,} & "
        + rf"{_text(format_bytes(whole))} \\",
        r"\bottomrule",
    ]
    text = caption or _caption(report, config, kernel, key, per_layer=key == "block")
    columns = "@{}lllrr@{}"
    if environment == "longtable":
        lines = [
            rf"\begin{{longtable}}{{{columns}}}",
            rf"\caption{{{text}}}\\",
            *head,
            r"\endfirsthead",
            *head,
            r"\endhead",
            *body,
            *foot,
            r"\end{longtable}",
        ]
    else:
        lines = [rf"\begin{{tabular}}{{{columns}}}", *head, *body, *foot, r"\end{tabular}"]
        if environment == "table":
            lines = [
                r"\begin{table}",
                r"\centering",
                r"\small",
                rf"\caption{{{text}}}",
                *lines,
                r"\end{table}",
            ]
    return "\n".join(lines)


def _lhs_text(key: str) -> str:
    return f"Total: {_text(key)}"


def _bytes(expr: sympy.Expr, values: Mapping[sympy.Symbol, sympy.Integer]) -> int:
    value = expr.xreplace(dict(values))
    if not isinstance(value, sympy.Integer):
        missing = ", ".join(sorted(str(s) for s in value.free_symbols))
        raise ConfigError(f"cannot evaluate {expr}: no value for {missing}")
    return int(value)


def _caption(report: Report, config: Config, kernel: str, key: str, *, per_layer: bool) -> str:
    what = "one transformer block" if per_layer else _text(key)
    return (
        f"Memory of training {_text(report.model.title)} ({what}) at "
        f"{_text(_config_text(config))}; "
        f"{_text(report.platform.name)}, attention kernel {_text(kernel)}."
    )


def _config_text(config: Config) -> str:
    return f"{_sizes_text(config)}, {_switches_text(config)}"


def _sizes_text(config: Config) -> str:
    return ", ".join(f"{k}={v:,}" for k, v in config.sizes().items() if v is not None)


def _switch_names(config: Config) -> Iterable[tuple[str, bool]]:
    return ((name, getattr(config, name)) for name in config.architecture.switch_names)


# -- the peak of a training step --------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """One argument of a step's maximum: the live bytes at one moment, and their value."""

    expr: sympy.Expr
    phase: str
    what: str
    nbytes: int

    @property
    def moment(self) -> str:
        at = "at its start" if self.what == "start" else f"after {self.what}"
        return f"{self.phase}, {at}"


def _pieces(phases: Sequence[StepPhase], config: Config) -> list[_Piece]:
    """The arguments of the maximum over ``phases`` (pruned as the report's peak is), in the
    step's order, each with its moment and its bytes at ``config``."""
    moments = [(p.name, what) for p in phases for _, what in p.candidates]
    found = [(expr, str(i)) for i, expr in enumerate(c for p in phases for c, _ in p.candidates)]
    values = config.values()
    pieces = []
    for expr, index in prune(found):
        phase, what = moments[int(index)]
        pieces.append(_Piece(expr, phase, what, _bytes(expr, values)))
    return pieces


def _largest(pieces: Sequence[_Piece]) -> int:
    """The index of the first piece with the most bytes."""
    return max(range(len(pieces)), key=lambda i: (pieces[i].nbytes, -i))


def _align(rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    r"""An ``align*`` of formulas, each row's lines after an ``\intertext`` label (the first
    row's label is left to the caller)."""
    body: list[str] = []
    for i, (label, lines) in enumerate(rows):
        if i:
            body.append(rf"\intertext{{{label}}}")
        body += lines
    out = []
    for i, line in enumerate(body):
        ends_row = i < len(body) - 1 and not line.startswith(r"\intertext")
        out.append(f"  {line}" + (r" \\" if ends_row else ""))
    return "\n".join([r"\begin{align*}", *out, r"\end{align*}"])


def _amount(nbytes: int) -> str:
    """Bytes for text mode: exact, then in binary units."""
    return f"{nbytes:,} B ({_text(format_bytes(nbytes))})"


def peak(
    report: Report,
    config: Config,
    *,
    symbols: Symbols = "default",
    width: int = 80,
) -> str:
    r"""The peak of a training step at ``config``: ``M_peak`` as the maximum of its pieces (the
    live bytes at each moment that can hold it, for the config's switches and size case), each
    with the phase and node it belongs to and its bytes at ``config``; the largest there; and
    ``max_memory_allocated``, with what it adds to the peak.

    Paragraphs and ``align*`` environments (sums in lines of about ``width`` characters) for a
    document that loads amsmath; :func:`document` includes them.

    >>> from symmem import build_report
    >>> text = peak(build_report("cuda"), Config.notebook())
    >>> print(text[: text.index(r"\begin{align*}")])
    The most memory alive at any moment of one training step of nanoGPT's loop (forward, the next
    batch, backward, clipping, the AdamW step, zero\_grad) is the largest of the live bytes at 15
    moments, here for AMP=1, DROPOUT=1, BIAS=0:
    \[ M_{\mathrm{peak}} = \max\left(P_{1}, P_{2}, \ldots, P_{15}\right) \]
    $P_{1}$: forward, after GPT.forward: 3,742,483,064 B (3.49 GiB) at the config.
    <BLANKLINE>
    """
    config.require_complete()
    names = symbol_set(symbols)
    run = report.step_at(config)
    pieces = _pieces(run.phases, config)
    top = _largest(pieces)
    cases = [f"${_print(p if v else sympy.Not(p), names)}$" for p, v in run.scenario.decisions]
    where = _switches_text(config) + (f" and {', '.join(cases)}" if cases else "")
    count = len(pieces)
    listed = ", ".join(f"P_{{{i}}}" for i in range(1, count + 1))
    if count > 3:
        listed = rf"P_{{1}}, P_{{2}}, \ldots, P_{{{count}}}"
    opening, closing = _LOOP_LINES.get(report.loop.name, _LOOP_LINES["nanogpt"])
    lines = [
        opening,
        f"{closing}at {count}",
        f"moment{'s' if count > 1 else ''}, here for {where}:",
        rf"\[ {_lhs('peak')} = \max\left({listed}\right) \]",
    ]
    rows = []
    for i, piece in enumerate(pieces, 1):
        mark = ", the largest" if i - 1 == top and count > 1 else ""
        label = f"$P_{{{i}}}$: {_text(piece.moment)}: {_amount(piece.nbytes)} at the config{mark}."
        first, *rest = _lines(_summands(piece.expr, names), width)
        rows.append((label, [rf"P_{{{i}}} &= {first}", *(rf"&\quad {line}" for line in rest)]))
    lines += [rows[0][0], _align(rows)]
    chosen = pieces[top]
    lines.append(
        f"At the config the largest is $P_{{{top + 1}}}$ ({_text(chosen.moment)}): "
        f"${_lhs('peak')}$ = {_amount(chosen.nbytes)}."
    )
    lines += ["", _allocated(report, run, config, chosen.nbytes, names, width)]
    return "\n".join(lines) + "\n"


#: How the peak's paragraph names each training loop (:mod:`symmem.loops`), up to "at n".
_LOOP_LINES = {
    "nanogpt": (
        "The most memory alive at any moment of one training step of nanoGPT's loop (forward, "
        "the next",
        "batch, backward, clipping, the AdamW step, zero\\_grad) is the largest of the live bytes ",
    ),
    "plain": (
        "The most memory alive at any moment of one training step of the plain loop (zero\\_grad,",
        "forward, backward, the AdamW step) is the largest of the live bytes ",
    ),
}


def _allocated(
    report: Report,
    run: StepRun,
    config: Config,
    peak_bytes: int,
    names: SymbolSet,
    width: int,
) -> str:
    """What ``max_memory_allocated`` is at ``config``, and what it adds to the peak."""
    key = _lhs("max_memory_allocated")
    phases = run.allocated
    if not report.platform.caching_allocator or not phases:
        return (
            f"On the {_text(report.platform.name)} platform no caching allocator rounds the "
            f"allocations: ${key}$ is the peak."
        )
    pieces = _pieces(phases, config)
    chosen = pieces[_largest(pieces)]
    workspaces = run.workspaces
    rounding = chosen.nbytes - peak_bytes - workspaces
    first, *rest = _lines(_summands(chosen.expr, names), width)
    formula = [rf"{key} &= {first}", *(rf"&\quad {line}" for line in rest)]
    return "\n".join(
        [
            r"\paragraph{What the GPU reports.} PyTorch's caching allocator hands out whole "
            f"blocks of {BLOCK} bytes,",
            "and keeps a cuBLAS workspace for each thread that runs matrix products, so "
            r"\texttt{torch.cuda.max\_memory\_allocated()}",
            f"counts the same step with an allocation of $n$ bytes taking ${BLOCK} "
            rf"\left\lceil n / {BLOCK} \right\rceil$ bytes, plus",
            f"$W$ = {_amount(workspaces)} of workspaces throughout. The largest of its "
            f"{len(pieces)} moments at the config",
            f"is {_text(chosen.moment)}:",
            _align([("", formula)]),
            f"that is {_amount(chosen.nbytes)}: the peak's {peak_bytes:,} B, plus $W$, plus "
            f"{rounding:,} B that the rounding adds.",
            r"The figure is exact with \texttt{PYTORCH\_CUDA\_ALLOC\_CONF=}\allowbreak"
            r"\texttt{expandable\_segments:True}; the default",
            "allocator sometimes hands out a cached block without splitting it and counts a "
            "little more.",
        ]
    )


def _switches_text(config: Config) -> str:
    return ", ".join(f"{k.upper()}={int(v)}" for k, v in _switch_names(config))


# -- a whole document -------------------------------------------------------------------------


def document(
    report: Report,
    config: Config,
    *,
    symbols: Symbols = "default",
    switches: Switches = None,
    title: str | None = None,
) -> str:
    """A standalone LaTeX document: symbols, totals, the peak of a training step at ``config``
    (:func:`peak`), one block's breakdown, and the table of every term at ``config``.

    It compiles with ``pdflatex`` (amsmath, booktabs, longtable, geometry) in two passes: the
    long table sets its column widths on the second (``symmem latex --pdf`` runs them; so does
    ``latexmk -pdf``). Its first lines say so. ``title`` defaults to "Memory of training" and
    the architecture."""
    names = symbol_set(symbols)
    title = title or f"Memory of training {report.model.title}"
    table_text = table(
        report, config, "total", symbols=names, switches=switches, environment="longtable"
    )
    model = report.model
    legend = [rf"${names.names[s]}$ & {_text(model.meanings[s])} \\" for s in model.arguments]
    where = (
        "with the switches at the values of the config"
        if switches
        else ("with the switches symbolic: each is 0 or 1")
    )
    source = f" Symbol names as in {_text(names.source)}." if names.name == "paper" else ""
    parts = [
        "% Written by symmem. Compile with pdflatex twice (the long table sets its column widths",
        "% on the second pass), or in one step: latexmk -pdf FILE.tex, or symmem latex --pdf.",
        r"\documentclass[10pt]{article}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage[landscape,margin=1.5cm]{geometry}",
        r"\usepackage{amsmath}",
        r"\usepackage{booktabs}",
        r"\usepackage{longtable}",
        r"\allowdisplaybreaks",
        r"\begin{document}",
        rf"\section*{{{_text(title)}}}",
        rf"Bytes PyTorch keeps while training {_text(report.model.title)} on "
        rf"{_text(report.platform.name)} "
        rf"(attention requested: {_text(report.attention)}), {where}.{source}",
        "",
        r"\subsection*{Symbols}",
        r"\begin{tabular}{@{}ll@{}}",
        r"\toprule",
        *legend,
        r"\bottomrule",
        r"\end{tabular}",
        "",
        r"\subsection*{Totals}",
        totals(report, symbols=names, switches=switches, width=90),
        "",
        rf"\subsection*{{The peak of a training step at {_text(_sizes_text(config))}}}",
        peak(report, config, symbols=names),
        r"\subsection*{One transformer block, term by term}",
        breakdown(report, "block", symbols=names, switches=switches, label_width=_LABELS),
        "",
        r"\subsection*{Every term}",
        r"{\footnotesize",
        table_text,
        "}",
        r"\end{document}",
        "",
    ]
    return "\n".join(parts)


# -- Jupyter ----------------------------------------------------------------------------------


def term_repr_latex(term: Term) -> str:
    r"""What a :class:`~symmem.report.Term` shows in Jupyter: its whole-model bytes.

    >>> from symmem import build_report
    >>> term_repr_latex(build_report("cuda").terms[0])
    '$\\displaystyle 8 B S$'
    """
    return rf"$\displaystyle {formula(term)}$"


def report_repr_latex(report: Report) -> str:
    """What a :class:`~symmem.report.Report` shows in Jupyter: every total, aligned."""
    return f"$\\displaystyle {totals(report, environment='aligned')}$"
