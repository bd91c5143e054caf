"""An estimate as JSON-ready data (the shape ``symmem estimate --json`` prints)."""

from __future__ import annotations

from typing import Any

from symmem.report import Estimate

__all__ = ["estimate_dict"]


def estimate_dict(estimate: Estimate) -> dict[str, Any]:
    """Config, terms (whole-model bytes, formulas with switches symbolic) and totals."""
    report = estimate.report
    return {
        "config": estimate.config.as_dict(),
        "platform": report.platform.name,
        "gpu": None if report.platform.gpu is None else report.platform.gpu.name,
        "attention": estimate.kernel,
        "attention_requested": report.attention,
        "kernel_reason": report.kernel_reason(estimate.config),
        "optimizer": report.optimizer,
        "param_count": estimate.param_count,
        "terms": [
            {
                "name": term.name,
                "module": term.module,
                "kind": term.kind,
                "per_layer": term.per_layer,
                "formula": str(term.formula),
                "layer_formula": str(term.layer_formula),
                "bytes": nbytes,
                "dtype": term.dtype,
                "shape": term.shape,
                "location": term.location,
                "saved_by": list(term.saved_by),
            }
            for term, nbytes in estimate.terms()
        ],
        "totals": dict(estimate.totals),
        "formulas": {key: str(value) for key, value in report.totals.items()},
    }
