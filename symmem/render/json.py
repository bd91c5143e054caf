"""An estimate as JSON-ready data (the shape ``symmem estimate --json`` prints)."""

from __future__ import annotations

from typing import Any

from symmem.allocator import describe
from symmem.parallel import RankEstimate
from symmem.report import Estimate

__all__ = ["estimate_dict", "rank_dict"]


def estimate_dict(estimate: Estimate, *, allocator: str = "default") -> dict[str, Any]:
    """Config, terms (whole-model bytes, formulas with switches symbolic), totals and the live
    memory of a training step phase by phase (``step``). The formulas of the peaks are the ones
    for the config's switches (the joined ones, with every switch symbolic, are long).

    ``allocator`` is the CUDA caching allocator's setting (:data:`symmem.allocator.ALLOCATORS`):
    it says what ``totals.max_memory_allocated`` is, exact or a lower bound.
    """
    report = estimate.report
    return {
        "config": estimate.config.as_dict(),
        "platform": report.platform.name,
        "gpu": None if report.platform.gpu is None else report.platform.gpu.name,
        "attention": estimate.kernel,
        "attention_requested": report.attention,
        "kernel_reason": report.kernel_reason(estimate.config),
        "optimizer": report.optimizer,
        "loop": report.loop.name,
        "grad_accum": report.grad_accum,
        "amp_dtype": report.amp_dtype,
        "ddp": report.ddp,
        "allocator": describe(allocator, caching=report.platform.caching_allocator),
        "param_count": estimate.param_count,
        "terms": [
            {
                "name": term.name,
                "module": term.module,
                "kind": term.kind,
                "per_layer": term.per_layer,
                "formula": term.formula_text,
                "layer_formula": term.layer_formula_text,
                "bytes": nbytes,
                "dtype": term.dtype,
                "shape": term.shape,
                "location": term.location,
                "saved_by": list(term.saved_by),
            }
            for term, nbytes in estimate.terms()
        ],
        "totals": dict(estimate.totals),
        "formulas": {key: estimate.formula_text(key) for key in report.totals},
        "step": {
            "peak": estimate.totals["peak"],
            "phase": estimate.peak_at[0],
            "at": estimate.peak_at[1],
            "phases": [
                {"phase": name, "start": start, "end": end, "peak": peak}
                for name, start, end, peak in estimate.timeline
            ],
        },
    }


def rank_dict(estimate: RankEstimate) -> dict[str, Any]:
    """One rank of a layout as JSON-ready data: its terms, totals (``block`` is one layer's
    activations for one micro-batch on the rank) and their formulas in the sizes and N, t, p."""
    ranks = estimate.ranks
    report = ranks.report
    return {
        "config": estimate.config.as_dict(),
        "per_rank": True,
        "profile": ranks.profile,
        "checkpoint": ranks.checkpoint,
        "layout": ranks.layout.as_dict(),
        "platform": report.platform.name,
        "gpu": None if report.platform.gpu is None else report.platform.gpu.name,
        "attention": report.kernel_for(estimate.config),
        "optimizer": report.optimizer,
        "terms": [
            {
                "name": rank.term.name,
                "module": rank.term.module,
                "kind": rank.term.kind,
                "per_layer": rank.term.per_layer,
                "split": rank.split,
                "formula": str(rank.formula),
                "bytes": nbytes,
                "location": rank.term.location,
            }
            for rank, nbytes in zip(ranks.terms, estimate.term_bytes, strict=True)
        ],
        "totals": dict(estimate.totals),
        "formulas": {key: str(value) for key, value in ranks.totals.items()},
    }
