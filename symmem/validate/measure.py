"""Measure what one nanoGPT training step really keeps, with PyTorch.

:func:`measure` runs a forward pass of :class:`~symmem.validate.nanogpt.GPT` and walks the autograd
graph it builds, reading every ``_saved_*`` field of every node. Saved tensors are grouped by
storage (a view counts as its base's allocation, once), fp32 parameters are left out, and each
storage is named the way symmem names its terms: after the first node (in creation order) that
saves it, or ``idx``, ``targets``, ``logits`` for those tensors. A ``saved_tensors_hooks`` pass over
the same forward records every packed storage as a cross-check. After ``backward`` and one AdamW
step it also measures parameters, gradients and optimizer state.

With activation checkpointing (``checkpoint="full"`` or ``"selective"``, non-reentrant), the nodes
made inside a checkpointed region keep nothing until backward recomputes the region: their saved
variables hold checkpoint's ``_Holder`` objects, and reading them would run the recomputation, so
the walk skips them. What such a region does keep is held by its ``_CheckpointFrame``: the region's
inputs (``saved_args``, packed through the ambient ``saved_tensors_hooks``, so the cross-check sees
them) and the RNG state ``torch.get_rng_state()`` returned when the region started
(``fwd_cpu_state``, plus ``fwd_device_states`` when CUDA is initialized), held by the
recomputation closure and packed by no hook. Each is a term named ``CheckpointFrame-<field>``
after the module the region runs (the block for ``full``, ``attn`` for ``selective``).
"""

from __future__ import annotations

import contextlib
import importlib
import re
import weakref
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils.checkpoint
from torch.overrides import TorchFunctionMode

from symmem.config import Config
from symmem.model import Model
from symmem.ops.graph import DEVICE, HOST
from symmem.report import CATEGORIES, TOTALS

__all__ = [
    "Forward",
    "MeasuredTerm",
    "Measurement",
    "build_adamw",
    "build_model",
    "kernel_context",
    "measure",
]


_BACKENDS = {
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "math": "MATH",
}


@dataclass(frozen=True)
class MeasuredTerm:
    """One measured term, summed over the blocks for a per-layer term.

    Attributes:
        name: Named as symmem names terms.
        module: The module that made it, with ``*`` for the block index.
        kind: Its category.
        location: ``device`` or ``host``.
        nbytes: Bytes, all blocks together.
        per_block: Bytes of each block, for a per-layer term.
        dtype: Element type.
        shape: Shape of the first saved tensor.
        saved: Whether an autograd node (or a checkpoint frame) keeps it for backward.
    """

    name: str
    module: str
    kind: str
    location: str
    nbytes: int
    per_block: tuple[int, ...] = ()
    dtype: str = ""
    shape: tuple[int, ...] = ()
    saved: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.module)


@dataclass(frozen=True)
class Measurement:
    """Everything measured for one config.

    Attributes:
        config: The config.
        device: ``cpu`` or ``cuda``.
        attention: The attention backend forced (or ``default``).
        torch_version: ``torch.__version__``.
        terms: Measured terms.
        totals: Measured bytes for each key of :data:`symmem.report.TOTALS`.
        param_count: Number of parameters.
        hook_bytes: Bytes of the distinct non-parameter storages ``saved_tensors_hooks`` packed
            (must equal the graph walk's ``activations + loss + inputs`` plus host tensors, less
            the checkpoint RNG states, which no hook packs: ``extra["checkpoint_rng_bytes"]``).
        peak_allocated: ``torch.cuda.max_memory_allocated()`` over the step (CUDA only).
        timeline: Live memory through nanoGPT's training loop, phase by phase
            (:mod:`symmem.validate.timeline`); its peak is ``totals["peak"]``.
    """

    config: Config
    device: str
    attention: str
    torch_version: str
    terms: tuple[MeasuredTerm, ...]
    totals: dict[str, int]
    param_count: int
    hook_bytes: int
    peak_allocated: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    timeline: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "attention": self.attention,
            "torch": self.torch_version,
            "param_count": self.param_count,
            "totals": dict(self.totals),
            "hook_bytes": self.hook_bytes,
            "peak_allocated": self.peak_allocated,
            "timeline": None
            if self.timeline is None
            else [
                {"phase": p.name, "start": p.start, "end": p.end, "peak": p.peak, "at": p.at}
                for p in self.timeline.phases
            ],
            "terms": [
                {
                    "name": t.name,
                    "module": t.module,
                    "kind": t.kind,
                    "location": t.location,
                    "bytes": t.nbytes,
                    "dtype": t.dtype,
                    "shape": list(t.shape),
                }
                for t in self.terms
            ],
        }


@dataclass(frozen=True)
class Forward:
    """One forward of a reference model, as its users call it.

    Attributes:
        logits: The logits.
        loss: The loss.
        held: Whatever else the returned output keeps alive (a Hugging Face model's output
            object, with its key/value cache), or ``None``.
        labelled: Tensors the output holds that are terms of their own, as ``(tensor, name,
            kind, module)`` (the key/value cache, per layer).
    """

    logits: torch.Tensor
    loss: torch.Tensor
    held: Any = None
    labelled: tuple[tuple[torch.Tensor, str, str, str], ...] = ()


class _ModuleTagger(TorchFunctionMode):
    """Tags every autograd node with the innermost module whose forward was running.

    With ``pack``, the measurement's own pack hook, it also records the nodes made while another
    pair of ``saved_tensors_hooks`` was innermost: those made inside a checkpointed region, whose
    saved variables checkpoint packs.
    """

    def __init__(self, model: torch.nn.Module, root: str, pack: Any = None) -> None:
        super().__init__()
        self.stack = [root]
        self.owner: dict[Any, str] = {}
        self.checkpointed: set[Any] = set()
        self.pack = pack
        self.handles = []
        for name, module in model.named_modules():
            if not name:
                continue
            self.handles.append(module.register_forward_pre_hook(self._enter(name)))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, name: str) -> Any:
        def hook(module: torch.nn.Module, args: Any) -> None:
            self.stack.append(name)

        return hook

    def _leave(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.stack.pop()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for tensor in _tensors(out):
            self._claim(tensor.grad_fn)
        return out

    def _claim(self, node: Any) -> None:
        hooks = torch._C._autograd._top_saved_tensors_default_hooks(False)
        foreign = self.pack is not None and hooks is not None and hooks[0] is not self.pack
        pending = [node]
        while pending:
            node = pending.pop()
            if node is None or node in self.owner:
                continue
            self.owner[node] = self.stack[-1]
            if foreign:
                self.checkpointed.add(node)
            pending.extend(next_node for next_node, _ in node.next_functions)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    return (str(tensor.device), tensor.untyped_storage().data_ptr())


def _graph_nodes(root: Any) -> list[Any]:
    seen: set[Any] = set()
    nodes = []
    pending = [root]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        nodes.append(node)
        pending.extend(next_node for next_node, _ in node.next_functions)
    return sorted(nodes, key=lambda n: n._sequence_nr())


def _saved_tensors(node: Any) -> list[tuple[str, torch.Tensor]]:
    saved = []
    for attr in sorted(dir(node)):
        if not attr.startswith("_saved_"):
            continue
        try:
            value = getattr(node, attr)
        except RuntimeError:  # freed or not available
            continue
        for tensor in _tensors(value):
            saved.append((attr.removeprefix("_saved_"), tensor))
    return saved


def _block_pattern(model: Model) -> re.Pattern[str]:
    """Matches a module name inside one of the model's blocks, capturing the layer index."""
    prefix = re.escape(model.block).replace(re.escape("*"), r"(\d+)")
    return re.compile(f"^{prefix}(?=\\.|$)")


def _module_pattern(model: Model, module: str) -> tuple[str, int | None]:
    match = _block_pattern(model).match(module)
    if match is None:
        return module, None
    return model.block + module[match.end() :], int(match.group(1))


def reference(config: Config) -> Any:
    """The module of :mod:`symmem.validate` that builds ``config``'s architecture in PyTorch:
    its ``build(config, device, checkpoint)`` returns the model in training mode, its
    ``run(model, idx, targets)`` one forward as its users call it, ``(logits, loss)``."""
    return importlib.import_module(config.architecture.reference)


def build_model(config: Config, dev: torch.device, checkpoint: str = "none") -> Any:
    """The PyTorch model of ``config`` on ``dev``, in training mode (dropout 0.1 where dropout
    is on), with activation checkpointing ``none``, ``full`` or ``selective``."""
    config.require_complete()
    return reference(config).build(config, dev, checkpoint)


def build_adamw(model: Any, optimizer: str, dev: torch.device) -> torch.optim.AdamW:
    """The model's AdamW: ``fused``, ``foreach``, ``forloop`` or ``default``. nanoGPT's
    ``configure_optimizers`` (default: fused on CUDA, as nanoGPT asks; PyTorch's own choice
    elsewhere); for a model without one (Hugging Face's), ``torch.optim.AdamW(model.parameters())``
    (default: PyTorch's own choice everywhere)."""
    flags = {"fused": (True, None), "foreach": (None, True), "forloop": (None, False)}
    if not hasattr(model, "configure_optimizers"):
        fused, foreach = flags.get(optimizer, (None, None))
        return torch.optim.AdamW(model.parameters(), fused=fused, foreach=foreach)
    if optimizer == "default" and dev.type == "cuda":
        optimizer = "fused"
    fused, foreach = flags.get(optimizer, (None, None))
    return model.configure_optimizers(
        weight_decay=0.1, learning_rate=6e-4, fused=fused, foreach=foreach
    )


def autocast_context(config: Config, dev: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast when AMP is on, as nanoGPT's ``ctx``; else nothing."""
    if config.amp:
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def kernel_context(attention: str) -> contextlib.AbstractContextManager[Any]:
    """Forces an SDPA backend, or nothing for ``default``."""
    if attention == "default":
        return contextlib.nullcontext()
    backend = getattr(torch.nn.attention.SDPBackend, _BACKENDS[attention])
    return torch.nn.attention.sdpa_kernel(backend)


def measure(
    config: Config,
    *,
    device: str = "cpu",
    attention: str = "default",
    optimizer: str = "default",
    seed: int = 0,
    checkpoint: str = "none",
    loop: str = "nanogpt",
) -> Measurement:
    """Run one training step of nanoGPT for ``config`` and measure every term.

    ``optimizer`` is ``fused``, ``foreach``, ``forloop`` or ``default`` (nanoGPT's choice: fused
    on CUDA, PyTorch's own default elsewhere). ``checkpoint`` is the activation checkpointing
    of the model: ``none``, ``full`` (each block) or ``selective`` (the attention core).
    ``loop`` is the training loop whose step the peak is measured in (:mod:`symmem.loops`).
    """
    config.require_complete()
    assert config.B and config.S and config.D and config.NH and config.V and config.L
    torch.manual_seed(seed)
    dev = torch.device(device)
    model = build_model(config, dev, checkpoint)
    adamw = build_adamw(model, optimizer, dev)
    idx = torch.randint(0, config.V, (config.B, config.S), device=dev)
    targets = torch.randint(0, config.V, (config.B, config.S), device=dev)
    params = {_storage_key(p) for p in model.parameters()}

    packed: dict[tuple[str, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in params:
            packed[key] = tensor.untyped_storage().nbytes()
        return tensor

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    arch = config.architecture
    tagger = _ModuleTagger(model, arch.root, pack)
    autocast = autocast_context(config, dev)
    frames: list[tuple[weakref.ReferenceType[Any], str]] = []
    with (
        kernel_context(attention),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        autocast,
        tagger,
        _recording_frames(frames, tagger, model),
    ):
        forward = reference(config).run(model, idx, targets)
    logits, loss = forward.logits, forward.loss
    tagger.remove()

    terms = _saved_terms(
        arch,
        loss.grad_fn,
        tagger.owner,
        params,
        dev,
        idx,
        targets,
        logits,
        tagger.checkpointed,
        [(frame, module) for ref, module in frames if (frame := ref()) is not None],
        forward.labelled,
    )
    used_kernel = _kernel_used([node.name() for node in _graph_nodes(loss.grad_fn)])
    hook_bytes = sum(packed.values())
    rng_bytes = sum(t.nbytes for t in terms if t.name.startswith(_FRAME + "-fwd_"))
    with kernel_context(attention):  # a checkpointed region recomputes attention in backward
        loss.backward()
    adamw.step()
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
    terms += _state_terms(arch, model, adamw, dev)
    totals = _totals(terms, config.L)
    param_count = sum(p.numel() for p in model.parameters())
    from symmem.validate.timeline import measure_timeline

    timeline = measure_timeline(
        config,
        device=device,
        attention=attention,
        optimizer=optimizer,
        checkpoint=checkpoint,
        loop=loop,
    )
    totals["peak"] = timeline.peak
    # The allocator's own count where there is a caching allocator; the live tensors on the CPU.
    allocated = timeline.max_memory_allocated
    totals["max_memory_allocated"] = allocated if allocated is not None else timeline.peak
    return Measurement(
        config,
        device,
        attention,
        torch.__version__,
        tuple(terms),
        totals,
        param_count,
        hook_bytes,
        peak,
        {"kernel": used_kernel, "checkpoint": checkpoint, "checkpoint_rng_bytes": rng_bytes},
        timeline,
    )


_FRAME = "CheckpointFrame"


@contextlib.contextmanager
def _recording_frames(
    frames: list[tuple[weakref.ReferenceType[Any], str]],
    tagger: _ModuleTagger,
    model: torch.nn.Module,
) -> Iterator[None]:
    """Records, weakly, every non-reentrant checkpoint frame made while active, with the module
    its region runs (the checkpointed module itself, else the module whose forward called it)."""
    module_names = {id(m): name for name, m in model.named_modules() if name}
    cls = torch.utils.checkpoint._CheckpointFrame

    class Recorded(cls):  # type: ignore[misc, valid-type]
        def __init__(self, recompute_fn: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(recompute_fn, *args, **kwargs)
            fn = _closure(recompute_fn).get("fn")
            frames.append((weakref.ref(self), module_names.get(id(fn), tagger.stack[-1])))

    torch.utils.checkpoint._CheckpointFrame = Recorded  # type: ignore[misc]
    try:
        yield
    finally:
        torch.utils.checkpoint._CheckpointFrame = cls  # type: ignore[misc]


def _closure(function: Any) -> dict[str, Any]:
    """The free variables of ``function`` that hold a value, by name."""
    values = {}
    for name, cell in zip(function.__code__.co_freevars, function.__closure__ or (), strict=True):
        try:
            values[name] = cell.cell_contents
        except ValueError:  # never assigned (preserve_rng_state=False)
            continue
    return values


def _frame_tensors(frame: Any) -> list[tuple[str, torch.Tensor]]:
    """What a checkpoint frame holds for backward: its inputs and its recomputation's state."""
    held = []
    for arg in frame.saved_args:
        if isinstance(arg, torch._C._autograd.SavedTensor):
            held.append(("saved_args", arg.unpack()))
    for name, value in _closure(frame.recompute_fn).items():
        if name in ("fwd_cpu_state", "fwd_device_states", "kwargs"):
            values = value.values() if isinstance(value, dict) else value
            held.extend((name, tensor) for tensor in _tensors(values))
    return held


def _saved_terms(
    arch: Model,
    root: Any,
    owner: dict[Any, str],
    params: set[tuple[str, int]],
    dev: torch.device,
    idx: torch.Tensor,
    targets: torch.Tensor,
    logits: torch.Tensor,
    checkpointed: Collection[Any] = (),
    frames: Sequence[tuple[Any, str]] = (),
    labelled: Sequence[tuple[torch.Tensor, str, str, str]] = (),
) -> list[MeasuredTerm]:
    """One term per saved storage (named after its first saver) plus idx, targets and logits.

    Nodes in ``checkpointed`` (made inside a checkpointed region) are skipped; each storage a
    checkpoint frame holds and no node saves is a ``CheckpointFrame-<field>`` term."""
    labels = {
        _storage_key(idx): ("idx", "inputs", arch.root, idx),
        _storage_key(targets): ("targets", "inputs", arch.root, targets),
        _storage_key(logits): ("logits", "logits", "lm_head", logits),
    }
    for tensor, name, kind, module in labelled:
        labels[_storage_key(tensor)] = (name, kind, module, tensor)
    first: dict[tuple[str, int], tuple[str, str, torch.Tensor]] = {}
    counts: dict[tuple[str, str], int] = {}
    for node in _graph_nodes(root):
        if node in checkpointed:
            continue  # its saved variables are checkpoint's holders; reading them recomputes
        saved = _saved_tensors(node)
        if not saved:
            continue
        module = owner.get(node, arch.root)
        counts[(module, node.name())] = occurrence = counts.get((module, node.name()), 0) + 1
        node_name = node.name() if occurrence == 1 else f"{node.name()}#{occurrence}"
        new: dict[tuple[str, int], list[str]] = {}
        for field_name, tensor in saved:
            key = _storage_key(tensor)
            if key in params or (key in first and key not in new):
                continue
            new.setdefault(key, []).append(field_name)
            first.setdefault(key, (node_name, module, tensor))
        for key, names in new.items():
            first[key] = (f"{node_name}-{'/'.join(sorted(set(names)))}", module, first[key][2])
    for frame, module in frames:
        for field_name, tensor in _frame_tensors(frame):
            key = _storage_key(tensor)
            if key not in params:
                first.setdefault(key, (f"{_FRAME}-{field_name}", module, tensor))
    kept = set(first)  # what nodes and checkpoint frames hold for backward
    for key, (name, _, module, tensor) in labels.items():
        first.setdefault(key, (name, module, tensor))
    by_key: dict[tuple[str, str], dict[int | None, int]] = {}
    meta: dict[tuple[str, str], tuple[str, str, torch.Tensor, bool]] = {}
    for key, (name, module, tensor) in first.items():
        if key in labels:
            name, kind, module, _ = labels[key]
        else:
            kind = "loss" if module == arch.root else "activations"
        pattern, layer = _module_pattern(arch, module)
        sizes = by_key.setdefault((name, pattern), {})
        sizes[layer] = sizes.get(layer, 0) + tensor.untyped_storage().nbytes()
        location = DEVICE if tensor.device.type == dev.type else HOST
        meta.setdefault((name, pattern), (kind, location, tensor, key in kept))
    terms = []
    for (name, pattern), sizes in by_key.items():
        kind, location, tensor, is_saved = meta[(name, pattern)]
        per_block = tuple(sizes[k] for k in sorted(k for k in sizes if k is not None))
        terms.append(
            MeasuredTerm(
                name,
                pattern,
                kind,
                location,
                sum(sizes.values()),
                per_block,
                str(tensor.dtype).removeprefix("torch."),
                tuple(tensor.shape),
                is_saved,
            )
        )
    return terms


def _kernel_used(node_names: list[str]) -> str:
    """The attention kernel, from the names of the graph's nodes."""
    names = set(node_names)
    for node, kernel in (
        ("ScaledDotProductFlashAttentionForCpuBackward0", "flash"),
        ("ScaledDotProductFlashAttentionBackward0", "flash"),
        ("ScaledDotProductEfficientAttentionBackward0", "efficient"),
        ("ScaledDotProductCudnnAttentionBackward0", "cudnn"),
    ):
        if node in names:
            return kernel
    return "math"


def _state_terms(
    arch: Model, model: torch.nn.Module, optimizer: torch.optim.Optimizer, dev: torch.device
) -> list[MeasuredTerm]:
    sums: dict[tuple[str, str, str, str], int] = {}

    def add(name: str, module: str, kind: str, tensor: torch.Tensor) -> None:
        location = DEVICE if tensor.device.type == dev.type else HOST
        key = (name, module, kind, location)
        sums[key] = sums.get(key, 0) + tensor.untyped_storage().nbytes()

    for pname, param in model.named_parameters():  # a tied weight is listed once
        module = arch.block if _block_pattern(arch).match(pname) else arch.rest
        add("parameters", module, "params", param)
        if param.grad is not None:
            add("gradients", module, "grads", param.grad)
        for state_name, value in optimizer.state[param].items():
            if isinstance(value, torch.Tensor):
                add(f"AdamW-{state_name}", module, "optimizer", value)
    return [MeasuredTerm(n, m, k, loc, b) for (n, m, k, loc), b in sums.items()]


def _totals(terms: list[MeasuredTerm], layers: int) -> dict[str, int]:
    totals = {key: 0 for key in TOTALS}
    for term in terms:
        if term.saved:
            totals["saved"] += term.nbytes
        if term.location == HOST:
            totals["host"] += term.nbytes
            continue
        totals[term.kind] += term.nbytes
        if term.kind == "activations" and term.per_block:
            totals["block"] += term.per_block[0]
    totals["total"] = sum(totals[k] for k in CATEGORIES)
    return totals
