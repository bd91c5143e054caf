"""Vectorised sweeps: arrays of sizes and switches in, arrays of exact bytes per total out.

>>> import numpy as np
>>> from symmem import build_report
>>> out = sweep(build_report("cuda"), B=np.arange(1, 5), S=1024, D=768, NH=12, V=50257, L=12)
>>> out["total"].dtype, len(out["total"])
(dtype('int64'), 4)
>>> one = Config(B=1, S=1024, D=768, NH=12, V=50257, L=12)
>>> out["total"].item(0) == build_report("cuda").compiled(one)["total"]
True
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from symmem.config import Config
from symmem.errors import ConfigError, KernelError
from symmem.symbols import FIELDS

if TYPE_CHECKING:
    import numpy as np

    from symmem.evaluate import CompiledReport, Maxima
    from symmem.model import Model
    from symmem.parallel import RankReport
    from symmem.report import Report

__all__ = ["Config", "sweep", "sweep_ranks"]

_INT64_MAX = 2**63 - 1
_BLOCK = 131072
_SUMS_BLOCK = 16384


def sweep(report: Report, *, grid: bool = False, **axes: Any) -> dict[str, np.ndarray]:
    """Every total of ``report`` over arrays of sizes and switches.

    Each size of the report's model (B, S, D, NH, V, L for nanoGPT; required) and each of its
    switches (amp, dropout, bias; default off) may be a number, a sequence, a ``range`` or an
    array. By default they broadcast against each other like NumPy
    arrays; with ``grid=True`` every 1-D axis becomes its own dimension (a Cartesian product, in
    the order given). The result maps each total (and ``param_count``) to an array of bytes:
    ``int64`` when no value can overflow it, otherwise exact Python integers (``object``).
    """
    import numpy as np

    model = report.model
    _check_axes(model, axes)
    names = (*model.size_names, *model.switch_names)
    defaults = dict.fromkeys(model.switch_names, False)
    arrays = {n: _as_array(model, axes.get(n, defaults.get(n)), n) for n in names}
    arrays = _broadcast(arrays, axes, grid)
    _check(report, arrays)
    compiled = report.compiled
    out_shape = arrays["B"].shape
    if arrays["B"].size == 0:  # an empty axis: empty results of the broadcast shape
        return {key: np.zeros(out_shape, dtype=np.int64) for key in compiled.keys}
    maxima = [int(arrays[n].max()) for n in model.size_names] + [1] * len(model.switches)
    # The generated code's partial sums (a piece from another piece or a total, plus and minus
    # what differs) stay within three times the bound: int64 with room to spare, or exact.
    exact = compiled.bound(maxima) > _INT64_MAX // 4
    dtype = object if exact else np.int64
    args = [np.asarray(arrays[n], dtype=dtype).ravel() for n in names]
    count = len(model.size_names)
    # One allocation for every total (each a row of it): far fewer page faults than one
    # array per total, which the kernel would map in and zero page by page.
    rows = np.empty((len(compiled.keys), args[0].size), dtype=dtype)
    out = dict(zip(compiled.keys, rows, strict=True))
    _sums(compiled, args, out)
    # Each maximum holds only the pieces that can be the largest within the model's narrowest
    # regime (symmem.dominance); the configs outside it are evaluated again, together, within
    # the next broader one, and so on, with every piece last.
    levels = [*reversed(range(len(compiled.regimes))), None]
    _within(compiled, args, count, out, levels)
    return {key: out[key].reshape(out_shape) for key in compiled.keys}


def _sums(compiled: CompiledReport, args: list[np.ndarray], out: dict[str, np.ndarray]) -> None:
    """The totals without a maximum at the flat arrays ``args`` (sizes, then switches), into
    ``out``: one function for every switch combination, block by block in the caller's order
    (blocks small enough that each operation's arrays stay in cache)."""
    size = args[0].size
    function = compiled.vector_sums()
    targets = [out[key] for key in compiled.sums]
    for low in range(0, size, _SUMS_BLOCK):
        results = function(*(a[low : low + _SUMS_BLOCK] for a in args))
        for target, value in zip(targets, results, strict=True):
            target[low : low + _SUMS_BLOCK] = value


#: Configs left for a broader regime, by switch combination: their positions in the caller's
#: flat order and their sizes there.
_Pending = dict[int, list[tuple["np.ndarray", list["np.ndarray"]]]]


def _within(
    compiled: CompiledReport,
    args: list[np.ndarray],
    count: int,
    out: dict[str, np.ndarray],
    levels: list[int | None],
) -> None:
    """The maxima over the step at ``args`` (the first ``count`` sizes, then switches), into
    ``out`` (which holds the sums already): every config within the regime ``levels[0]``, and
    the configs outside it again within the next (``None``: every piece), and so on."""
    pending = _narrowest(compiled, args, count, out, levels[0])
    for level in levels[1:]:
        if not pending:
            break
        pending = _again(compiled, out, pending, level)


def _narrowest(
    compiled: CompiledReport,
    args: list[np.ndarray],
    count: int,
    out: dict[str, np.ndarray],
    level: int | None,
) -> _Pending:
    """The maxima at every config with the functions of the regime ``level``, into ``out``;
    the configs outside it are returned, grouped by switch combination."""
    import numpy as np

    size = args[0].size
    keys = compiled.maxima
    # Each switch combination has its own function (each maximum over the step then holds one
    # combination's pieces). The configs are taken block by block in the caller's order; a
    # block that mixes combinations is grouped with one stable sort, each group evaluated into
    # a buffer, and the buffer put back in the block's order with one gather per maximum.
    # Blocks that stay in cache make each NumPy operation, the sort and the gathers several
    # times faster. The configs outside the regime are found and set aside group by group,
    # while their sizes are in cache.
    functions: dict[int, Maxima] = {}
    buffers = {key: np.empty(min(size, _BLOCK), dtype=out[key].dtype) for key in keys}
    positions = np.arange(min(size, _BLOCK))
    switches = len(args) - count
    sources: ChainMap[Any, np.ndarray] = ChainMap(dict(enumerate(args[:count])), out)
    pending: _Pending = {}
    for low in range(0, size, _BLOCK):
        high = min(low + _BLOCK, size)
        combo = np.zeros(high - low, dtype=np.uint8)
        for i, switch in enumerate(args[count:]):
            combo |= np.asarray(switch[low:high], dtype=np.uint8) << i
        groups = np.bincount(combo, minlength=2**switches)
        mixed = np.count_nonzero(groups) > 1
        order = np.argsort(combo, kind="stable") if mixed else None
        columns = _Taken(sources, slice(low, high), order)
        start = 0
        for code, members in enumerate(groups.tolist()):
            if not members:
                continue
            maxima = functions.get(code)
            if maxima is None:
                maxima = functions[code] = compiled.vector_for(_key(code, switches), level)
            part = slice(start, start + members)
            sizes = [columns[i][part] for i in range(count)]
            results = maxima.function(*sizes, *(columns[name][part] for name in maxima.inputs))
            # A mixed block's groups go to the buffers; a block of one combination in place.
            target, at = (buffers, start) if mixed else (out, low + start)
            for name, value in zip(keys, results, strict=True):
                target[name][at : at + members] = value
            if level is not None:
                outside = np.flatnonzero(compiled.outside(level, *sizes))
                if outside.size:
                    where = low + (outside + start if order is None else order[part][outside])
                    pending.setdefault(code, []).append((where, [s[outside] for s in sizes]))
            start += members
        if order is not None:
            back = np.empty(high - low, dtype=np.intp)
            back[order] = positions[: high - low]
            for name in keys:
                view = out[name][low:high]
                np.take(buffers[name][: high - low], back, out=view, mode="clip")
    return pending


def _again(
    compiled: CompiledReport, out: dict[str, np.ndarray], pending: _Pending, level: int | None
) -> _Pending:
    """The maxima at the ``pending`` configs with the functions of the regime ``level``, into
    ``out``; the configs outside it are returned."""
    import numpy as np

    switches = len(compiled.model.switches)
    left: _Pending = {}
    for code, parts in pending.items():
        maxima = compiled.vector_for(_key(code, switches), level)
        everywhere = np.concatenate([where for where, _ in parts])
        every = [np.concatenate(s) for s in zip(*(sizes for _, sizes in parts), strict=True)]
        for low in range(0, everywhere.size, _BLOCK):
            where = everywhere[low : low + _BLOCK]
            sizes = [s[low : low + _BLOCK] for s in every]
            inputs = [out[name][where] for name in maxima.inputs]
            results = maxima.function(*sizes, *inputs)
            for name, value in zip(compiled.maxima, results, strict=True):
                out[name][where] = value
            if level is not None:
                outside = np.flatnonzero(compiled.outside(level, *sizes))
                if outside.size:
                    left.setdefault(code, []).append((where[outside], [s[outside] for s in sizes]))
    return left


def _key(code: int, switches: int) -> tuple[bool, ...]:
    """The switch values a combination's code stands for (bit i: switch i)."""
    return tuple(bool((code >> i) & 1) for i in range(switches))


class _Taken(dict[Any, "np.ndarray"]):
    """The arrays of ``source`` at ``where`` (a slice or positions), then in the permutation
    ``order`` if one is given, each taken on first use."""

    def __init__(self, source: Mapping[Any, np.ndarray], where: Any, order: Any = None) -> None:
        super().__init__()
        self._source, self._where, self._order = source, where, order

    def __missing__(self, key: Any) -> np.ndarray:
        value: np.ndarray = self._source[key][self._where]
        if self._order is not None:
            value = value[self._order]
        self[key] = value
        return value


def _check_axes(model: Model, axes: dict[str, Any]) -> None:
    unknown = set(axes) - set(model.size_names) - set(model.switch_names)
    if unknown:
        raise ConfigError(
            f"unknown sweep axes for {model.name}: {', '.join(sorted(unknown))} (it has "
            f"{', '.join((*model.size_names, *model.switch_names))})"
        )
    missing = [n for n in model.size_names if n not in axes]
    if missing:
        raise ConfigError("missing sizes: " + ", ".join(missing))


def _broadcast(
    arrays: dict[str, np.ndarray], axes: dict[str, Any], grid: bool
) -> dict[str, np.ndarray]:
    """The axes broadcast against each other; with ``grid``, each 1-D axis given with other
    than one value (an empty one too) becomes its own dimension, in the order given."""
    import numpy as np

    if grid:
        varying = [name for name in axes if arrays[name].ndim == 1 and arrays[name].size != 1]
        for position, name in enumerate(varying):
            dims = [1] * len(varying)
            dims[position] = arrays[name].size
            arrays[name] = arrays[name].reshape(dims)
    try:
        return dict(zip(arrays, np.broadcast_arrays(*arrays.values()), strict=True))
    except ValueError as error:
        raise ConfigError(f"sweep axes do not broadcast together: {error}") from None


def _as_array(model: Model, value: Any, name: str) -> np.ndarray:
    import numpy as np

    array = np.asarray(list(value) if isinstance(value, range) else value)
    if array.dtype == bool:
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu" and not (array.dtype == object and _all_ints(array)):
        raise ConfigError(f"{name} must hold whole numbers, got dtype {array.dtype}")
    if array.size and name in model.switch_names and not 0 <= array.min() <= array.max() <= 1:
        raise ConfigError(f"{name} must be 0/1 or True/False")
    if array.size and name not in model.switch_names and array.min() <= 0:
        raise ConfigError(f"{name} must be positive")
    return array


def _all_ints(array: np.ndarray) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in array.flat)


def _check(report: Report, arrays: dict[str, np.ndarray]) -> None:
    """Every element must be a config the report's kernel can run."""
    model = report.model
    for small, large in model.divides:
        a, b = arrays[FIELDS[small]], arrays[FIELDS[large]]
        if ((b % a) != 0).any():
            raise ConfigError(f"{large} is not divisible by {small} somewhere in the sweep")
    dropouts = arrays.get("dropout", arrays["amp"] * 0)
    for amp in (0, 1):
        for dropout in (0, 1):
            if (bool(amp), bool(dropout)) in report.kernels:
                continue
            if ((arrays["amp"] == amp) & (dropouts == dropout)).any():
                report.platform.kernel(report.attention, amp=bool(amp), dropout=bool(dropout))
                raise KernelError(
                    f"attention {report.attention!r} cannot run with amp={bool(amp)}, "
                    f"dropout={bool(dropout)}"
                )


def sweep_ranks(ranks: RankReport, *, grid: bool = False, **axes: Any) -> dict[str, np.ndarray]:
    """Every per-rank total of ``ranks`` (:func:`symmem.parallel.per_rank`) over arrays.

    Takes the axes of :func:`sweep` and, for counts the layout leaves symbolic, ``dp``, ``tp``
    and ``pp``. Each element is evaluated exactly (a rank's share can be a fraction of a
    formula until the counts are known), so this is for thousands of configs, not millions;
    the result holds Python integers (``object`` arrays).

    >>> from symmem import build_report
    >>> from symmem.parallel import Layout, per_rank
    >>> from symmem.symbols import T
    >>> ranks = per_rank(build_report("cuda"), Layout(tp=T, sp=True))
    >>> out = sweep_ranks(ranks, B=8, S=2048, D=8192, NH=64, V=51200, L=80, amp=True, tp=[8, 16])
    >>> print(*out["block"])
    805863424 402931712
    """
    import numpy as np

    model = ranks.report.model
    counts: list[str] = [name for name in ("dp", "tp", "pp") if name in axes]
    _check_axes(model, {k: v for k, v in axes.items() if k not in counts})
    names = [*model.size_names, *model.switch_names, *counts]
    defaults = dict.fromkeys(model.switch_names, False)
    arrays = {name: _as_array(model, axes.get(name, defaults.get(name)), name) for name in names}
    for count in counts:
        if (arrays[count] <= 0).any():
            raise ConfigError(f"{count} must be positive")
    arrays = _broadcast(arrays, axes, grid)
    shape = arrays["B"].shape
    flat = {name: array.ravel() for name, array in arrays.items()}
    out = {key: np.empty(flat["B"].size, dtype=object) for key in ranks.totals}
    for i in range(flat["B"].size):
        values = {name: int(flat[name][i]) for name in names}
        sizes: dict[str, Any] = {n: values[n] for n in model.size_names}
        switches = {n: bool(values[n]) for n in model.switch_names}
        config = Config(model=model.name, **sizes, **switches)
        totals = ranks.at(config, **{n: values[n] for n in counts}).totals
        for key, value in totals.items():
            out[key][i] = value
    return {key: value.reshape(shape) for key, value in out.items()}
