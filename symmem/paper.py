"""What two papers assume about training memory, as tables of terms.

**Activations** (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", arXiv:2205.05198, MLSys 2023). Section 4.1 counts what one transformer layer saves for
the backward pass, in bytes, assuming 16-bit tensors and 1-byte dropout masks, and leaving out
small buffers such as the layer norms' mean and variance. :data:`PAPER_TERMS` is that count, one
row per tensor, in symmem's symbols (the paper's s, b, h, a are ``S``, ``B``, ``D``, ``NH``), with
the nanoGPT module that saves the tensor and how the tensor is split over ``t`` tensor-parallel
ranks. Every row of the paper's Table 2 is *computed* from the rows, by
:func:`paper_activations`:

>>> from symmem.symbols import B, D, NH, S
>>> sympy.expand(paper_activations() - B*S*D*(34 + 5*NH*S/D))
0
>>> sympy.expand(paper_activations(tp=T, sp=True, recompute="selective") - 34*B*S*D/T)
0

**Model states under ZeRO** (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models", arXiv:1910.02054, SC20). :data:`ZERO_PAPER` is the paper's
mixed-precision Adam (Section 3.1), :data:`ZERO_PYTORCH` what nanoGPT with PyTorch AMP keeps
(symmem's ``parameters``, ``gradients``, ``AdamW-exp_avg`` and ``AdamW-exp_avg_sq`` terms); each
row says from which ZeRO stage on it is sharded over ``N`` data-parallel ranks:

>>> zero_model_states(1)
4*Psi + 12*Psi/N
>>> zero_model_states(1, accounting="pytorch")
8*Psi + 8*Psi/N

What was checked against the papers' text (a full-text transcription of each paper, found with a
code search; the printed papers remain the authority):

* Korthikanti et al.: the Section 4.1 breakdown (attention block 11sbh + 5as²b as QKV input 2sbh,
  Q and K 4sbh, softmax output 2as²b, softmax dropout mask as²b, dropout output 2as²b and V
  2sbh, linear projection input 2sbh, attention dropout mask sbh; MLP 19sbh as its two linear
  inputs 2sbh and 8sbh, GeLU input 8sbh, dropout mask sbh; two layer-norm inputs 2sbh each),
  Equation 1, Equation 2 (tensor parallelism: the 10sbh of the layer norms, the two dropout masks
  and the inputs of the QKV and h→4h linears are replicated), Equation 4 (sequence parallelism
  divides everything by t, the first linear's input included), Section 5 (selective recomputation
  drops exactly the 5as/h term: QKᵀ, softmax, softmax dropout and attention over V; full
  recomputation keeps the layer input, 2sbhL, which "can be further reduced to 2sbhL/t" by storing
  a slice per tensor-parallel rank, an option the paper does not use) and Table 2 (six rows).
  The paper names the GeLU output by its use, as the "8sbh" input of the second linear layer.
* Rajbhandari et al.: Section 3.1 (2Ψ + 2Ψ + KΨ = 16Ψ with K = 12: an fp32 copy of the
  parameters, momentum and variance, 4Ψ each), Sections 5.1 to 5.3 (4Ψ + KΨ/N_d, 2Ψ + 14Ψ/N_d,
  16Ψ/N_d) and their Figure 1 example (the caption gives Ψ = 7.5B, N_d = 64, K = 12; the text
  of Sections 5.1 to 5.3 gives 120 GB, 31.4 GB, 16.6 GB and 1.9 GB).
* EleutherAI's "Transformer Math 101" (Anthony, Biderman and Schoelkopf, 2023,
  https://blog.eleuther.ai/transformer-math/) states the same accounting (AdamW 12 bytes per
  parameter as fp32 copy, momentum and variance; 2-byte model and gradients in mixed precision;
  ZeRO stages dividing optimizer, then gradient, then model memory by the GPU count). Only
  secondary copies of that page's memory section could be read, so nothing here rests on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from symmem.errors import ConfigError
from symmem.symbols import NH, B, D, N, S, T

__all__ = [
    "ACCOUNTINGS",
    "BLOCKS",
    "PAPER_TERMS",
    "PSI",
    "RECOMPUTE",
    "SHARDS",
    "STAGES",
    "TABLE_2",
    "ZERO_PAPER",
    "ZERO_PYTORCH",
    "ModelState",
    "N",
    "PaperTerm",
    "Parallelism",
    "T",
    "paper_activations",
    "paper_terms",
    "table_2",
    "zero_model_states",
    "zero_terms",
]

PSI = sympy.Symbol("Psi", positive=True, integer=True)  #: parameters (ZeRO's Ψ)

BLOCKS = ("attention", "mlp", "layernorm")
#: ``tensor``: split over the t ranks by tensor parallelism. ``sequence``: replicated under tensor
#: parallelism, split along the sequence only when sequence parallelism is on.
SHARDS = ("tensor", "sequence")
RECOMPUTE = ("none", "selective", "full")
STAGES = (0, 1, 2, 3)
ACCOUNTINGS = ("paper", "pytorch")

_PAPER_SYMBOLS = frozenset({B, S, D, NH})


def _choices(values: tuple[object, ...]) -> str:
    return ", ".join(repr(v) for v in values)


def _count(value: object, what: str) -> sympy.Expr:
    """A positive whole number, or a SymPy expression known to be positive."""
    if isinstance(value, bool) or not isinstance(value, int | sympy.Expr):
        raise ConfigError(
            f"{what} must be a positive whole number or a SymPy expression, got {value!r}"
        )
    expr = sympy.sympify(value)
    if expr.is_number:
        if not expr.is_integer or not expr.is_positive:
            raise ConfigError(f"{what} must be a positive whole number, got {value!r}")
    elif expr.is_positive is not True:
        raise ConfigError(
            f"{what} must be known to be positive (declare its symbols positive=True), "
            f"got {value!r}"
        )
    return expr


# -- activations: Korthikanti et al. 2022 -----------------------------------------------------


@dataclass(frozen=True)
class PaperTerm:
    """One tensor the paper counts in a transformer layer.

    Attributes:
        name: The paper's words for it.
        block: The paper's group: ``attention``, ``mlp`` or ``layernorm``.
        module: The nanoGPT module that saves it, in symmem's naming (``Term.module``).
        nbytes: Bytes per layer with no parallelism (16-bit tensors, 1-byte masks).
        shard: How it splits over t ranks, one of :data:`SHARDS`.
        core: Part of the attention core (the 5as²b terms) that selective recomputation drops.
        layer_input: The layer's input, the one tensor full recomputation keeps.
    """

    name: str
    block: str
    module: str
    nbytes: sympy.Expr
    shard: str
    core: bool = False
    layer_input: bool = False

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ConfigError(f"block must be one of {_choices(BLOCKS)}, got {self.block!r}")
        if self.shard not in SHARDS:
            raise ConfigError(f"shard must be one of {_choices(SHARDS)}, got {self.shard!r}")
        if (
            not isinstance(self.nbytes, sympy.Expr)
            or not self.nbytes.free_symbols <= _PAPER_SYMBOLS
        ):
            raise ConfigError(f"nbytes must be an expression in B, S, D, NH, got {self.nbytes!r}")


_SBH = S * B * D  # s·b·h: one byte for each hidden unit of each token
_AS2B = NH * S**2 * B  # a·s²·b: one byte for each head and each pair of tokens

_H = "transformer.h.*"
#: Section 4.1 of the paper, tensor by tensor, in the order of the forward pass.
PAPER_TERMS: tuple[PaperTerm, ...] = (
    PaperTerm(
        "layer-norm 1 input", "layernorm", f"{_H}.ln_1", 2 * _SBH, "sequence", layer_input=True
    ),
    PaperTerm("QKV input", "attention", f"{_H}.attn.c_attn", 2 * _SBH, "sequence"),
    PaperTerm("Q and K", "attention", f"{_H}.attn", 4 * _SBH, "tensor"),
    PaperTerm("softmax output", "attention", f"{_H}.attn", 2 * _AS2B, "tensor", core=True),
    PaperTerm("softmax dropout mask", "attention", f"{_H}.attn", _AS2B, "tensor", core=True),
    PaperTerm("softmax dropout output", "attention", f"{_H}.attn", 2 * _AS2B, "tensor", core=True),
    PaperTerm("V", "attention", f"{_H}.attn", 2 * _SBH, "tensor"),
    PaperTerm("linear projection input", "attention", f"{_H}.attn.c_proj", 2 * _SBH, "tensor"),
    PaperTerm("attention dropout mask", "attention", f"{_H}.attn.resid_dropout", _SBH, "sequence"),
    PaperTerm("layer-norm 2 input", "layernorm", f"{_H}.ln_2", 2 * _SBH, "sequence"),
    PaperTerm("h→4h linear input", "mlp", f"{_H}.mlp.c_fc", 2 * _SBH, "sequence"),
    PaperTerm("GeLU input", "mlp", f"{_H}.mlp.gelu", 8 * _SBH, "tensor"),
    PaperTerm("4h→h linear input (GeLU output)", "mlp", f"{_H}.mlp.c_proj", 8 * _SBH, "tensor"),
    PaperTerm("MLP dropout mask", "mlp", f"{_H}.mlp.dropout", _SBH, "sequence"),
)


@dataclass(frozen=True, kw_only=True)
class Parallelism:
    """How a layer is split and what it recomputes.

    Attributes:
        tp: Tensor-parallel size: a positive whole number or an expression such as :data:`T`.
        sp: Sequence parallelism (over the same ranks as tensor parallelism) on or off.
        recompute: ``none``, ``selective`` (drop the attention core) or ``full`` (keep only the
            layer input).
    """

    tp: int | sympy.Expr = 1
    sp: bool = False
    recompute: str = "none"

    def __post_init__(self) -> None:
        _count(self.tp, "tp")
        if not isinstance(self.sp, bool):
            raise ConfigError(f"sp must be True or False, got {self.sp!r}")
        if self.recompute not in RECOMPUTE:
            raise ConfigError(
                f"recompute must be one of {_choices(RECOMPUTE)}, got {self.recompute!r}"
            )

    def bytes_of(self, term: PaperTerm) -> sympy.Expr:
        """Bytes of ``term`` on one rank, per layer."""
        kept = {
            "none": True,
            "selective": not term.core,
            "full": term.layer_input,
        }[self.recompute]
        if not kept:
            return sympy.Integer(0)
        split = term.shard == "tensor" or self.sp
        return term.nbytes / sympy.sympify(self.tp) if split else term.nbytes


def paper_terms(
    *, tp: int | sympy.Expr = 1, sp: bool = False, recompute: str = "none"
) -> tuple[tuple[PaperTerm, sympy.Expr], ...]:
    """Every row of :data:`PAPER_TERMS` with its bytes per layer on one rank (0 where dropped).

    >>> for term, nbytes in paper_terms(tp=T, recompute="selective")[2:5]:
    ...     print(f"{term.name}: {nbytes}")
    Q and K: 4*B*D*S/t
    softmax output: 0
    softmax dropout mask: 0
    """
    options = Parallelism(tp=tp, sp=sp, recompute=recompute)
    return tuple((term, options.bytes_of(term)) for term in PAPER_TERMS)


def paper_activations(
    *, tp: int | sympy.Expr = 1, sp: bool = False, recompute: str = "none"
) -> sympy.Expr:
    """Activation bytes of one transformer layer on one rank, as the paper counts them.

    >>> paper_activations()
    34*B*D*S + 5*B*NH*S**2
    >>> paper_activations(tp=T)
    10*B*D*S + 24*B*D*S/t + 5*B*NH*S**2/t
    >>> paper_activations(tp=8, sp=True, recompute="full")
    B*D*S/4
    """
    rows = paper_terms(tp=tp, sp=sp, recompute=recompute)
    return sympy.Add(*(nbytes for _, nbytes in rows))


#: The rows of the paper's Table 2, as options; :func:`table_2` computes their bytes.
TABLE_2: tuple[tuple[str, Parallelism], ...] = (
    ("no parallelism", Parallelism()),
    ("tensor parallel (baseline)", Parallelism(tp=T)),
    ("tensor + sequence parallel", Parallelism(tp=T, sp=True)),
    (
        "tensor parallel + selective activation recomputation",
        Parallelism(tp=T, recompute="selective"),
    ),
    (
        "tensor parallel + sequence parallel + selective activation recomputation",
        Parallelism(tp=T, sp=True, recompute="selective"),
    ),
    ("full activation recomputation", Parallelism(tp=T, recompute="full")),
)


def table_2() -> tuple[tuple[str, sympy.Expr], ...]:
    """The paper's Table 2, each row summed from :data:`PAPER_TERMS`.

    >>> for name, nbytes in table_2():
    ...     print(f"{name}: {nbytes}")
    no parallelism: 34*B*D*S + 5*B*NH*S**2
    tensor parallel (baseline): 10*B*D*S + 24*B*D*S/t + 5*B*NH*S**2/t
    tensor + sequence parallel: 34*B*D*S/t + 5*B*NH*S**2/t
    tensor parallel + selective activation recomputation: 10*B*D*S + 24*B*D*S/t
    tensor parallel + sequence parallel + selective activation recomputation: 34*B*D*S/t
    full activation recomputation: 2*B*D*S
    """
    return tuple(
        (name, paper_activations(tp=o.tp, sp=o.sp, recompute=o.recompute)) for name, o in TABLE_2
    )


# -- model states: ZeRO (Rajbhandari et al. 2020) ---------------------------------------------


@dataclass(frozen=True)
class ModelState:
    """One per-parameter tensor of the model states.

    Attributes:
        name: What it is (in :data:`ZERO_PYTORCH`, the name of symmem's term).
        dtype: Its element type.
        bytes_per_param: Bytes it takes per parameter.
        sharded_from: The first ZeRO stage that shards it: 1 optimizer states, 2 gradients,
            3 parameters.
    """

    name: str
    dtype: str
    bytes_per_param: int
    sharded_from: int

    def __post_init__(self) -> None:
        if self.sharded_from not in STAGES[1:]:
            raise ConfigError(f"sharded_from must be 1, 2 or 3, got {self.sharded_from!r}")
        if isinstance(self.bytes_per_param, bool) or not isinstance(self.bytes_per_param, int):
            raise ConfigError(
                f"bytes_per_param must be a whole number, got {self.bytes_per_param!r}"
            )
        if self.bytes_per_param <= 0:
            raise ConfigError(f"bytes_per_param must be positive, got {self.bytes_per_param}")


#: Mixed-precision Adam as ZeRO counts it (Section 3.1): K = 12 bytes of optimizer states.
ZERO_PAPER: tuple[ModelState, ...] = (
    ModelState("fp16 parameters", "float16", 2, 3),
    ModelState("fp16 gradients", "float16", 2, 2),
    ModelState("fp32 parameter copy", "float32", 4, 1),
    ModelState("fp32 momentum", "float32", 4, 1),
    ModelState("fp32 variance", "float32", 4, 1),
)

#: What nanoGPT with PyTorch AMP keeps: fp32 parameters and gradients (autocast casts the weights
#: on the fly, there is no fp32 master copy to add) and AdamW's two fp32 moments.
ZERO_PYTORCH: tuple[ModelState, ...] = (
    ModelState("parameters", "float32", 4, 3),
    ModelState("gradients", "float32", 4, 2),
    ModelState("AdamW-exp_avg", "float32", 4, 1),
    ModelState("AdamW-exp_avg_sq", "float32", 4, 1),
)

_ZERO_TABLES = {"paper": ZERO_PAPER, "pytorch": ZERO_PYTORCH}


def zero_terms(
    stage: int,
    params: int | sympy.Expr = PSI,
    *,
    ranks: int | sympy.Expr = N,
    accounting: str = "paper",
) -> tuple[tuple[ModelState, sympy.Expr], ...]:
    """Each model state with its bytes on one of ``ranks`` data-parallel ranks at ZeRO ``stage``.

    >>> for state, nbytes in zero_terms(2, accounting="pytorch"):
    ...     print(f"{state.name}: {nbytes}")
    parameters: 4*Psi
    gradients: 4*Psi/N
    AdamW-exp_avg: 4*Psi/N
    AdamW-exp_avg_sq: 4*Psi/N
    """
    if isinstance(stage, bool) or not isinstance(stage, int) or stage not in STAGES:
        raise ConfigError(f"stage must be one of {_choices(STAGES)}, got {stage!r}")
    if accounting not in _ZERO_TABLES:
        raise ConfigError(f"accounting must be one of {_choices(ACCOUNTINGS)}, got {accounting!r}")
    psi, n = _count(params, "params"), _count(ranks, "ranks")
    return tuple(
        (state, state.bytes_per_param * psi / (n if stage >= state.sharded_from else 1))
        for state in _ZERO_TABLES[accounting]
    )


def zero_model_states(
    stage: int,
    params: int | sympy.Expr = PSI,
    *,
    ranks: int | sympy.Expr = N,
    accounting: str = "paper",
) -> sympy.Expr:
    """Model-state bytes on one data-parallel rank at ZeRO ``stage`` (0 is plain data parallel).

    >>> print(*(zero_model_states(stage) for stage in STAGES), sep="; ")
    16*Psi; 4*Psi + 12*Psi/N; 2*Psi + 14*Psi/N; 16*Psi/N
    >>> zero_model_states(1, 7_500_000_000, ranks=64)
    31406250000
    """
    rows = zero_terms(stage, params, ranks=ranks, accounting=accounting)
    return sympy.Add(*(nbytes for _, nbytes in rows))
