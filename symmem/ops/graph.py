"""Symbolic tensors and the trace that records what autograd saves.

The model runs its ``forward`` on :class:`Tensor` objects whose shapes are SymPy expressions.
Every op says which tensors its backward node saves (``trace.save``); views share their base's
:class:`Storage`, so a storage saved by several nodes is counted once, exactly as PyTorch holds it.

A trace runs under one :class:`Scenario`: concrete values of the switches (AMP, dropout, bias) and
of any size predicate an op asks about (for example "B = 1 or NH = 1", which decides whether a
reshape is a view or a copy). :mod:`symmem.report` runs every scenario and joins the results into
expressions in which the switches are symbols again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy

from symmem.dtypes import DEVICE, FLOAT32, HOST, DType
from symmem.ops.nodes import NODES

if TYPE_CHECKING:
    from symmem.platforms import AttentionKernel, Platform

__all__ = [
    "DEVICE",
    "HOST",
    "ROOT",
    "Param",
    "Save",
    "Scenario",
    "Storage",
    "Tensor",
    "Trace",
    "UndecidedPredicateError",
]

Shape = tuple[sympy.Expr, ...]


class Storage:
    """One allocation. Compared by identity: two tensors share memory iff they share a Storage.

    Attributes:
        shape: The shape it was allocated with.
        dtype: Its element type.
        location: ``device`` (the training device) or ``host`` (CPU memory beside a GPU).
        module: The module whose forward allocated it.
        label: A name of its own (``idx``, ``logits``), or ``None`` if it is named by its savers.
        kind: Its category when it is not an ordinary activation (``inputs``, ``logits``,
            ``param``), else ``None``.
    """

    __slots__ = ("dtype", "kind", "label", "location", "module", "shape")

    def __init__(
        self,
        shape: Shape,
        dtype: DType,
        location: str,
        module: str,
        label: str | None,
        kind: str | None,
    ) -> None:
        self.shape = shape
        self.dtype = dtype
        self.location = location
        self.module = module
        self.label = label
        self.kind = kind

    @property
    def nbytes(self) -> sympy.Expr:
        return sympy.Mul(*self.shape) * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"Storage({self.shape}, {self.dtype}, {self.location}, {self.label or self.module})"


@dataclass(frozen=True, eq=False)
class Tensor:
    """A symbolic tensor: a shape and dtype over a storage.

    Attributes:
        shape: Sizes of each dimension, as SymPy expressions.
        dtype: Element type.
        storage: The allocation it is a view of.
        order: The dimensions from outermost to innermost in memory (a permutation).
        dense: Whether it covers its storage without gaps (a slice such as ``q`` of the fused
            ``c_attn`` output does not).
    """

    shape: Shape
    dtype: DType
    storage: Storage
    order: tuple[int, ...] = ()
    dense: bool = True

    def __post_init__(self) -> None:
        if not self.order:
            object.__setattr__(self, "order", tuple(range(len(self.shape))))

    @property
    def numel(self) -> sympy.Expr:
        return sympy.Mul(*self.shape)

    @property
    def is_contiguous(self) -> bool:
        return self.dense and self.order == tuple(range(len(self.shape)))

    def view(self, *shape: sympy.Expr | int) -> Tensor:
        """``view``/``split``-style reshaping over the same storage, in row-major order."""
        return Tensor(
            tuple(sympy.sympify(s) for s in shape), self.dtype, self.storage, (), self.dense
        )

    def slice_last(self, size: sympy.Expr) -> Tensor:
        """One piece of ``split(size, dim=-1)``: a view with gaps between its rows."""
        return Tensor((*self.shape[:-1], size), self.dtype, self.storage, self.order, False)

    def transpose(self, i: int, j: int) -> Tensor:
        """``transpose(i, j)``: a view with two dimensions swapped."""
        n = len(self.shape)
        i, j = i % n, j % n
        shape = list(self.shape)
        shape[i], shape[j] = shape[j], shape[i]
        swap = {i: j, j: i}
        order = tuple(swap.get(d, d) for d in self.order)
        return Tensor(tuple(shape), self.dtype, self.storage, order, self.dense)


@dataclass(frozen=True)
class Save:
    """One tensor saved for backward by one autograd node.

    Attributes:
        node: The node's class name, e.g. ``MmBackward0``.
        field: The saved field, as PyTorch's ``_saved_<field>`` names it.
        tensor: What is saved.
        module: Qualified name of the module whose forward created the node.
        order: Creation order of the node (PyTorch's sequence number order).
        occurrence: 1 for the first node of its class in its module, 2 for the second, ...
    """

    node: str
    field: str
    tensor: Tensor
    module: str
    order: int
    occurrence: int = 1

    @property
    def node_name(self) -> str:
        """The node's class name, with ``#n`` for the n-th node of its class in its module."""
        return self.node if self.occurrence == 1 else f"{self.node}#{self.occurrence}"


@dataclass(frozen=True)
class Param:
    """A parameter tensor of the model.

    Attributes:
        name: Qualified name, with ``*`` for the layer index inside blocks.
        shape: Its shape.
        tensor: The symbolic tensor (fp32, a storage of kind ``param``).
    """

    name: str
    shape: Shape
    tensor: Tensor

    @property
    def numel(self) -> sympy.Expr:
        return sympy.Mul(*self.shape)


@dataclass(frozen=True)
class Scenario:
    """Concrete values under which one trace runs.

    Attributes:
        amp: Autocast on.
        dropout: Dropout probability above zero.
        bias: Biases on.
        decisions: Truth values of size predicates asked so far, as ``(predicate, value)`` pairs.
    """

    amp: bool
    dropout: bool
    bias: bool
    decisions: tuple[tuple[sympy.Basic, bool], ...] = ()

    def decided(self, predicate: sympy.Basic) -> bool | None:
        for known, value in self.decisions:
            if known == predicate:
                return value
        return None

    def deciding(self, predicate: sympy.Basic, value: bool) -> Scenario:
        return Scenario(self.amp, self.dropout, self.bias, (*self.decisions, (predicate, value)))


class UndecidedPredicateError(Exception):
    """Raised inside a trace when an op asks about a predicate the scenario has not decided."""

    def __init__(self, predicate: sympy.Basic):
        super().__init__(str(predicate))
        self.predicate = predicate


@dataclass
class Trace:
    """Records what one forward pass saves, allocates and owns, under one scenario.

    Attributes:
        platform: The platform's rules (autocast dtype, how dropout saves, ...).
        kernel: The attention kernel this scenario runs.
        scenario: Switch values and size decisions.
        saves: Every ``(node, field, tensor)`` saved, in creation order.
        params: Parameters, in the order the forward declares them.
        labelled: Storages that are terms of their own (inputs, logits).
    """

    platform: Platform
    kernel: AttentionKernel
    scenario: Scenario
    saves: list[Save] = field(default_factory=list)
    params: dict[str, Param] = field(default_factory=dict)
    labelled: list[Storage] = field(default_factory=list)
    _modules: list[str] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _casts: dict[tuple[int, str], Tensor] = field(default_factory=dict)

    # -- context -------------------------------------------------------------------------------
    @property
    def amp(self) -> bool:
        return self.scenario.amp

    @property
    def module_name(self) -> str:
        return ".".join(self._modules) if self._modules else ROOT

    @contextmanager
    def module(self, name: str) -> Iterator[None]:
        """Run the enclosed ops as the forward of submodule ``name`` (dotted names allowed)."""
        self._modules.append(name)
        try:
            yield
        finally:
            self._modules.pop()

    def holds(self, predicate: sympy.Basic) -> bool:
        """Whether a size predicate holds in this scenario (see :class:`Scenario`)."""
        value = self.scenario.decided(predicate)
        if value is None:
            raise UndecidedPredicateError(predicate)
        return value

    # -- allocation ----------------------------------------------------------------------------
    def new(
        self,
        shape: tuple[sympy.Expr | int, ...],
        dtype: DType,
        *,
        location: str = DEVICE,
        label: str | None = None,
        kind: str | None = None,
    ) -> Tensor:
        """A fresh allocation (an op's output)."""
        exprs = tuple(sympy.sympify(s) for s in shape)
        storage = Storage(exprs, dtype, location, self.module_name, label, kind)
        if label is not None:
            self.labelled.append(storage)
        return Tensor(exprs, dtype, storage)

    def label(self, tensor: Tensor, name: str, kind: str) -> None:
        """Make ``tensor``'s storage a term of its own (e.g. the logits), whether saved or not."""
        tensor.storage.label = name
        tensor.storage.kind = kind
        self.labelled.append(tensor.storage)

    def like(self, tensor: Tensor, dtype: DType | None = None) -> Tensor:
        """A fresh output of an elementwise op on ``tensor``.

        Like PyTorch's TensorIterator, the output is dense and keeps the input's memory order.
        """
        out = self.new(tensor.shape, dtype or tensor.dtype)
        return Tensor(out.shape, out.dtype, out.storage, tensor.order)

    def param(self, name: str, *shape: sympy.Expr | int) -> Tensor:
        """Declare (or look up, for a tied weight) a parameter of the module now running."""
        qualified = name if name in self.params else f"{self.module_name}.{name}"
        if qualified not in self.params:
            tensor = self.new(shape, FLOAT32, kind="param")
            self.params[qualified] = Param(qualified, tensor.shape, tensor)
        return self.params[qualified].tensor

    def cast(self, tensor: Tensor, dtype: DType) -> Tensor:
        """``tensor.to(dtype)``: the same tensor if the dtype matches, else a contiguous copy.

        Casts of parameters are cached, as autocast caches its weight copies for one forward.
        """
        if tensor.dtype == dtype:
            return tensor
        key = (id(tensor.storage), dtype.name)
        if tensor.storage.kind == "param" and key in self._casts:
            return self._casts[key]
        # .to() keeps the strides of a dense tensor and makes a contiguous copy of one with gaps.
        copy = self.like(tensor, dtype) if tensor.dense else self.new(tensor.shape, dtype)
        if tensor.storage.kind == "param":
            self._casts[key] = copy
        return copy

    # -- autograd ------------------------------------------------------------------------------
    def save(self, node: str, saved: Mapping[str, Tensor | None]) -> None:
        """Record the tensors ``node`` saves, by field name (``None`` for an absent field)."""
        known = NODES.get(node)
        if known is None:
            raise KeyError(f"node {node} is not in the NODES table")
        unknown = set(saved) - set(known)
        if unknown:
            raise KeyError(f"{node} saves no field(s) {sorted(unknown)}")
        order = next(self._order)
        module = self.module_name
        occurrence = 1 + sum(
            1 for s in {(s.order, s.node, s.module) for s in self.saves} if s[1:] == (node, module)
        )
        for name, tensor in saved.items():
            if tensor is not None:
                self.saves.append(Save(node, name, tensor, module, order, occurrence))


#: Module name of ops that run in the model's own forward, outside any submodule.
ROOT = "GPT.forward"
