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
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sympy

from symmem.dtypes import DEVICE, FLOAT32, HOST, DType
from symmem.ops.nodes import NODES
from symmem.symbols import AMP, BIAS, DROPOUT, SWITCH_DEFAULTS, TIED

if TYPE_CHECKING:
    from symmem.model.spec import Model
    from symmem.ops.checkpoint import Frame, Hooks
    from symmem.platforms import AttentionKernel, Platform

__all__ = [
    "DEVICE",
    "HOST",
    "Edge",
    "Event",
    "Node",
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

    __slots__ = ("__weakref__", "dtype", "kind", "label", "location", "module", "shape")

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
        grad_fn: The autograd node that made it (views keep their base's), ``None`` for a leaf.
        output_nr: Which output of ``grad_fn`` it is.
    """

    shape: Shape
    dtype: DType
    storage: Storage
    order: tuple[int, ...] = ()
    dense: bool = True
    grad_fn: Node | None = field(default=None, repr=False)
    output_nr: int = 0

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
            tuple(sympy.sympify(s) for s in shape),
            self.dtype,
            self.storage,
            (),
            self.dense,
            self.grad_fn,
            self.output_nr,
        )

    def slice_last(self, size: sympy.Expr) -> Tensor:
        """One piece of ``split(size, dim=-1)``: a view with gaps between its rows."""
        return Tensor(
            (*self.shape[:-1], size), self.dtype, self.storage, self.order, False, self.grad_fn
        )

    def transpose(self, i: int, j: int) -> Tensor:
        """``transpose(i, j)``: a view with two dimensions swapped."""
        n = len(self.shape)
        i, j = i % n, j % n
        shape = list(self.shape)
        shape[i], shape[j] = shape[j], shape[i]
        swap = {i: j, j: i}
        order = tuple(swap.get(d, d) for d in self.order)
        return Tensor(
            tuple(shape), self.dtype, self.storage, order, self.dense, self.grad_fn, self.output_nr
        )

    @property
    def edge(self) -> Edge | None:
        """Where this tensor's gradient goes: its node's output slot, or its parameter."""
        if self.grad_fn is not None:
            return Edge(self.grad_fn, self.output_nr, None, self.shape, self.dtype)
        if self.storage.kind == "param":
            return Edge(None, 0, id(self.storage), self.shape, self.dtype)
        return None


@dataclass(frozen=True)
class Edge:
    """Where one input's gradient goes in backward.

    Attributes:
        node: The node that made the input, or ``None`` for a parameter.
        slot: Which of that node's outputs the input is.
        param: For a parameter, its storage's ``id`` (the key of its AccumulateGrad).
        shape: The input's shape (its gradient's shape).
        dtype: The input's dtype (the engine casts a gradient of another dtype to it).
    """

    node: Node | None
    slot: int
    param: int | None
    shape: Shape
    dtype: DType


#: A gradient rule: gets the engine and the node's output gradients, returns input gradients.
Backward = Callable[..., Sequence["Tensor | None"]]


@dataclass(eq=False)
class Node:
    """One autograd node, as the engine runs it in backward.

    Attributes:
        name: PyTorch's class name of the node (the first one, where an op makes several).
        module: The module whose forward made it.
        order: Creation order; backward runs nodes in reverse order.
        inputs: Where each input's gradient goes (``None`` for inputs without one).
        saved: The storages it holds for backward; released when it has run.
        backward: Allocates the input gradients, in PyTorch's order (see :mod:`symmem.ops.engine`).
        outputs: How many outputs it has.
        frame: For a node that saves tensors inside a checkpointed region, the region's
            checkpoint frame: ``saved`` stays empty until backward recomputes the region
            (:mod:`symmem.ops.checkpoint`).
    """

    name: str
    module: str
    order: int
    inputs: tuple[Edge | None, ...]
    saved: list[Storage]
    backward: Backward
    outputs: int = 1
    frame: Frame | None = None


#: One entry of a trace's event log: ``("alloc" | "free", storage id, bytes, location, what)``
#: or ``("mark", 0, 0, "", name)``.
Event = tuple[str, int, sympy.Expr, str, str]


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
        switches: The value of each switch of the model, as ``(symbol, value)`` pairs.
        decisions: Truth values of size predicates asked so far, as ``(predicate, value)`` pairs.
    """

    switches: tuple[tuple[sympy.Symbol, bool], ...]
    decisions: tuple[tuple[sympy.Basic, bool], ...] = ()

    def on(self, switch: sympy.Symbol) -> bool:
        """The value of ``switch``: the scenario's, or its fixed value in a model without it."""
        for symbol, value in self.switches:
            if symbol == switch:
                return value
        return SWITCH_DEFAULTS[switch]

    @property
    def amp(self) -> bool:
        return self.on(AMP)

    @property
    def dropout(self) -> bool:
        return self.on(DROPOUT)

    @property
    def bias(self) -> bool:
        return self.on(BIAS)

    @property
    def tied(self) -> bool:
        return self.on(TIED)

    @property
    def combo(self) -> tuple[int, ...]:
        """The switch values as 0/1, in the model's order."""
        return tuple(int(value) for _, value in self.switches)

    def decided(self, predicate: sympy.Basic) -> bool | None:
        for known, value in self.decisions:
            if known == predicate:
                return value
        return None

    def deciding(self, predicate: sympy.Basic, value: bool) -> Scenario:
        return Scenario(self.switches, (*self.decisions, (predicate, value)))


class UndecidedPredicateError(Exception):
    """Raised inside a trace when an op asks about a predicate the scenario has not decided."""

    def __init__(self, predicate: sympy.Basic):
        super().__init__(str(predicate))
        self.predicate = predicate


@dataclass
class Trace:
    """Records what one forward pass saves, allocates and owns, under one scenario.

    Attributes:
        model: The architecture being traced (its name for ops outside every module, the
            dtype of its parameters).
        platform: The platform's rules (autocast dtype, how dropout saves, ...).
        kernel: The attention kernel this scenario runs.
        scenario: Switch values and size decisions.
        saves: Every ``(node, field, tensor)`` saved, in creation order.
        params: Parameters, in the order the forward declares them.
        labelled: Storages that are terms of their own (inputs, logits).
        checkpoint: The model's activation checkpointing: ``none``, ``full`` (every block)
            or ``selective`` (the attention core); see :mod:`symmem.ops.checkpoint`.
        hooks: The ``saved_tensors_hooks`` in force, if any: a checkpointed region's frame in
            the forward, its recomputation in backward. They decide what a pack keeps.
        biased_matmul: Whether a matmul with a bias (``addmm``) has run, which on CUDA takes
            cuBLASLt's workspace (:mod:`symmem.allocator`).
        returned: Tensors the model's output holds besides the logits and the loss (a Hugging
            Face model's key/value cache): alive as long as the caller keeps the output.
        buffers: The model's buffers that are not parameters (Llama's rotary ``inv_freq``):
            device memory from the model's construction on, like the parameters.
        shared: Timeline keys of storages made once per forward outside the blocks and saved
            by every block (the rotary cos and sin): the traced block's release of them is
            the last block's, so the step frees them once, after every block.
    """

    model: Model
    platform: Platform
    kernel: AttentionKernel
    scenario: Scenario
    saves: list[Save] = field(default_factory=list)
    params: dict[str, Param] = field(default_factory=dict)
    labelled: list[Storage] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    events: list[Event] | None = None
    op: str = ""
    checkpoint: str = "none"
    hooks: Hooks | None = None
    biased_matmul: bool = False
    returned: list[Tensor] = field(default_factory=list)
    buffers: list[Storage] = field(default_factory=list)
    shared: set[int] = field(default_factory=set)
    _keys: weakref.WeakKeyDictionary[Storage, int] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    _modules: list[str] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _casts: dict[tuple[int, str], Tensor] = field(default_factory=dict)

    # -- context -------------------------------------------------------------------------------
    @property
    def amp(self) -> bool:
        return self.scenario.amp

    @property
    def module_name(self) -> str:
        return ".".join(self._modules) if self._modules else self.model.root

    @contextmanager
    def module(self, name: str) -> Iterator[None]:
        """Run the enclosed ops as the forward of submodule ``name`` (dotted names allowed)."""
        self._modules.append(name)
        try:
            yield
        finally:
            self._modules.pop()

    @contextmanager
    def replaying(self, hooks: Hooks, modules: Sequence[str]) -> Iterator[None]:
        """Run the enclosed ops again as the forward of ``modules`` under ``hooks``, with a fresh
        autocast cache (dropped at the end, as a new ``autocast`` region drops its own), as
        checkpoint's recomputation does."""
        kept = (self._casts, self._modules, self.hooks, self.op)
        self._casts, self._modules, self.hooks, self.op = {}, list(modules), hooks, "recompute"
        try:
            yield
        finally:
            self._casts, self._modules, self.hooks, self.op = kept

    @property
    def modules(self) -> tuple[str, ...]:
        """The module path now running, outermost first."""
        return tuple(self._modules)

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
        grad_fn: Node | None = None,
        output_nr: int = 0,
    ) -> Tensor:
        """A fresh allocation (an op's output, made by ``grad_fn`` if it has one)."""
        exprs = tuple(sympy.sympify(s) for s in shape)
        storage = Storage(exprs, dtype, location, self.module_name, label, kind)
        if label is not None:
            self.labelled.append(storage)
        if self.events is not None and kind != "param":  # parameters exist before the step
            self._record_alloc(storage)
        return Tensor(exprs, dtype, storage, grad_fn=grad_fn, output_nr=output_nr)

    # -- lifetimes (recorded only when ``events`` is a list) -----------------------------------
    def _record_alloc(self, storage: Storage) -> None:
        assert self.events is not None
        key, what = next(self._ids), storage.label or self.module_name
        if self.op:
            what = f"{self.op} ({what})"
        event = (key, storage.nbytes, storage.location, what)
        self._keys[storage] = key
        self.events.append(("alloc", *event))
        weakref.finalize(storage, self.events.append, ("free", *event))

    def end_forward(self) -> None:
        """Drop what only the forward holds: autocast's cache of weight copies (its ``with``
        ends) and the records kept for the report (saves, labels). Saved tensors stay with
        their nodes."""
        self._casts.clear()
        self.saves.clear()
        self.labelled.clear()

    def mark(self, name: str) -> None:
        """Put a named mark in the event log (a phase or block boundary)."""
        if self.events is not None:
            self.events.append(("mark", 0, sympy.Integer(0), "", name))

    def label(self, tensor: Tensor, name: str, kind: str) -> None:
        """Make ``tensor``'s storage a term of its own (e.g. the logits), whether saved or not."""
        tensor.storage.label = name
        tensor.storage.kind = kind
        self.labelled.append(tensor.storage)

    def like(
        self, tensor: Tensor, dtype: DType | None = None, grad_fn: Node | None = None
    ) -> Tensor:
        """A fresh output of an elementwise op on ``tensor``.

        Like PyTorch's TensorIterator, the output is dense and keeps the input's memory order.
        """
        out = self.new(tensor.shape, dtype or tensor.dtype)
        return Tensor(out.shape, out.dtype, out.storage, tensor.order, grad_fn=grad_fn)

    def buffer(self, *shape: sympy.Expr | int, dtype: DType = FLOAT32) -> Tensor:
        """A buffer of the module now running (``register_buffer``): made with the model, alive
        throughout the step, in no category of saved tensors."""
        exprs = tuple(sympy.sympify(s) for s in shape)
        storage = Storage(exprs, dtype, DEVICE, self.module_name, None, "buffer")
        self.buffers.append(storage)
        return Tensor(exprs, dtype, storage)

    def share(self, tensor: Tensor) -> None:
        """Mark ``tensor``'s storage as saved by every block (see :attr:`shared`)."""
        key = self._keys.get(tensor.storage)
        if key is not None:
            self.shared.add(key)

    def param(self, name: str, *shape: sympy.Expr | int) -> Tensor:
        """Declare (or look up, for a tied weight) a parameter of the module now running."""
        qualified = name if name in self.params else f"{self.module_name}.{name}"
        if qualified not in self.params:
            tensor = self.new(shape, self.model.param_dtype, kind="param")
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
        node = self.node("ToCopyBackward0", (tensor,), {}, _cast_backward(tensor))
        # .to() keeps the dimension order of its input in memory, closing any gaps (empty_like
        # with preserve_format): a copy of a slice of c_attn's output is (B, S, NH, hs) inside.
        copy = self.like(tensor, dtype, node)
        if tensor.storage.kind == "param":
            self._casts[key] = copy
        return copy

    # -- autograd ------------------------------------------------------------------------------
    def node(
        self,
        name: str,
        inputs: Sequence[Tensor | None],
        saved: Mapping[str, Tensor | None],
        backward: Backward,
        outputs: int = 1,
    ) -> Node:
        """Record an autograd node: what it saves (see :meth:`pack`) and how its backward runs."""
        tensors = {field: x for field, x in saved.items() if x is not None}
        if tensors:
            _check_fields(name, saved)
        edges = tuple(x.edge if x is not None else None for x in inputs)
        node = Node(name, self.module_name, next(self._order), edges, [], backward, outputs)
        if self.hooks is None or self.hooks.records_nodes:
            self.nodes.append(node)
        self.pack(node, tensors)
        return node

    def pack(self, node: Node, saved: Mapping[str, Tensor]) -> None:
        """Autograd saves ``saved`` for ``node``: the node holds their storages (each once), and
        the report records them, unless ``saved_tensors_hooks`` are active (``hooks``: a
        checkpointed region), which then decide what is kept."""
        if not saved:
            return
        if self.hooks is not None:
            self.hooks.pack(node, saved)
            return
        self.record(node.name, list(saved.items()), node.order)
        for tensor in saved.values():
            if all(tensor.storage is not s for s in node.saved):
                node.saved.append(tensor.storage)

    def save(self, node: str, saved: Mapping[str, Tensor | None], order: int | None = None) -> None:
        """Record the tensors ``node`` saves, by field name (``None`` for an absent field).

        ``order`` is the node's creation order when the node exists already (a node that saves
        its own output); by default the save creates the next one.
        """
        _check_fields(node, saved)
        pairs = [(name, tensor) for name, tensor in saved.items() if tensor is not None]
        self.record(node, pairs, order)

    def record(
        self, node: str, saved: Sequence[tuple[str, Tensor]], order: int | None = None
    ) -> None:
        """Record, for the report, ``(field, tensor)`` pairs that ``node`` (of creation order
        ``order``, by default the next one) keeps for backward; a field may hold several."""
        if order is None:
            order = next(self._order)
        module = self.module_name
        occurrence = 1 + sum(
            1 for s in {(s.order, s.node, s.module) for s in self.saves} if s[1:] == (node, module)
        )
        for name, tensor in saved:
            self.saves.append(Save(node, name, tensor, module, order, occurrence))

    def save_output(self, node: Node, name: str, tensor: Tensor) -> None:
        """Record that ``node`` saves its own output ``tensor`` as field ``name``."""
        self.pack(node, {name: tensor})


def _check_fields(node: str, saved: Mapping[str, object]) -> None:
    known = NODES.get(node)
    if known is None:
        raise KeyError(f"node {node} is not in the NODES table")
    unknown = set(saved) - set(known)
    if unknown:
        raise KeyError(f"{node} saves no field(s) {sorted(unknown)}")


def _cast_backward(tensor: Tensor) -> Backward:
    """ToCopyBackward0: the gradient copied back to the source's dtype, keeping its layout."""
    shape, dtype = tensor.shape, tensor.dtype

    def backward(engine: Any, grad: Tensor) -> tuple[Tensor]:
        return (engine.new(shape, dtype, grad.order),)

    return backward
