"""The symbols every memory term is written in.

Sizes are positive integers. Switches are integers that take the values 0 and 1, so that a term
like ``B*S*D*(4 - 2*AMP)`` stays one expression for both precisions.

>>> from symmem.symbols import B, S, D, AMP
>>> (B*S*D*(4 - 2*AMP)).subs({B: 2, S: 3, D: 4, AMP: 1})
48
"""

from __future__ import annotations

from types import MappingProxyType

import sympy

__all__ = [
    "AMP",
    "BIAS",
    "DROPOUT",
    "FIELDS",
    "LATEX_NAMES",
    "NH",
    "NKV",
    "PARALLEL",
    "SIZES",
    "SMAX",
    "SWITCHES",
    "SWITCH_DEFAULTS",
    "SYMBOLS",
    "TIED",
    "B",
    "D",
    "F",
    "L",
    "N",
    "P",
    "S",
    "T",
    "V",
]


def _size(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, positive=True, integer=True)


def _switch(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, nonnegative=True, integer=True)


B = _size("B")  #: batch size
S = _size("S")  #: sequence length (nanoGPT's block_size: wpe has S rows)
D = _size("D")  #: hidden size (n_embd)
NH = _size("NH")  #: attention heads (n_head)
V = _size("V")  #: vocabulary size
L = _size("L")  #: transformer blocks (n_layer)
NKV = _size("NKV")  #: key/value heads (NKV = NH: multi-head attention; 1: multi-query)
F = _size("F")  #: the MLP's hidden width (intermediate_size)
SMAX = _size("SMAX")  #: rows of a learned position table (GPT-2's n_positions), at least S

N = _size("N")  #: data-parallel ranks
T = _size("t")  #: tensor-parallel ranks
P = _size("p")  #: pipeline stages

AMP = _switch("AMP")  #: 1 under autocast mixed precision (16-bit compute), 0 in fp32
DROPOUT = _switch("DROPOUT")  #: 1 when the dropout probability is above zero
BIAS = _switch("BIAS")  #: 1 when Linear and LayerNorm layers have biases
TIED = _switch("TIED")  #: 1 when the input and output embeddings share one weight

#: Every size symbol, in the order a model lists the ones it uses (:mod:`symmem.model`).
SIZES: tuple[sympy.Symbol, ...] = (B, S, D, NH, V, L, NKV, F, SMAX)
#: Every switch symbol; a model uses some of them.
SWITCHES: tuple[sympy.Symbol, ...] = (AMP, DROPOUT, BIAS, TIED)
#: How training is spread over GPUs (:mod:`symmem.parallel`); one GPU has N = t = p = 1.
PARALLEL: tuple[sympy.Symbol, ...] = (N, T, P)

#: The field of :class:`symmem.config.Config` that gives each size or switch its value.
FIELDS = MappingProxyType(
    {s: str(s) for s in SIZES} | {AMP: "amp", DROPOUT: "dropout", BIAS: "bias", TIED: "tied"}
)

#: Every symbol by its name, for ``parse_expr(text, local_dict=SYMBOLS)``.
SYMBOLS = MappingProxyType({str(s): s for s in SIZES + SWITCHES + PARALLEL})

#: How each symbol prints in LaTeX (NH must not print as N times H).
LATEX_NAMES = MappingProxyType(
    {
        B: "B",
        S: "S",
        D: "D",
        NH: r"n_{\mathrm{head}}",
        V: "V",
        L: "L",
        NKV: r"n_{\mathrm{kv}}",
        F: "F",
        SMAX: r"S_{\max}",
        N: "N",
        T: "t",
        P: "p",
        AMP: r"\mathrm{AMP}",
        DROPOUT: r"\mathrm{DROPOUT}",
        BIAS: r"\mathrm{BIAS}",
        TIED: r"\mathrm{TIED}",
    }
)

#: The value a switch has in a model that does not make it a symbol (nanoGPT always ties its
#: embeddings; Llama has no dropout).
SWITCH_DEFAULTS = MappingProxyType({AMP: False, DROPOUT: False, BIAS: False, TIED: True})
