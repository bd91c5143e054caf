"""The categories of memory and the totals a report gives."""

from __future__ import annotations

__all__ = ["CATEGORIES", "SUMS", "TOTALS"]

#: Categories every term belongs to, in report order.
CATEGORIES = ("activations", "loss", "inputs", "logits", "params", "grads", "optimizer")
#: Keys of ``Report.totals``: ``block`` (one block's saved bytes), the categories (device memory
#: only), ``total`` (their sum), ``peak`` (the most device memory alive at any moment of a
#: training step, :mod:`symmem.step`) and ``host`` (host tensors, outside every other total).
TOTALS = ("block", *CATEGORIES, "total", "peak", "host")
#: The totals that are sums of terms (every one but ``peak``, a maximum over a training step).
SUMS = tuple(key for key in TOTALS if key != "peak")
