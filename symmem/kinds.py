"""The categories of memory and the totals a report gives."""

from __future__ import annotations

__all__ = ["CATEGORIES", "MAXIMA", "SUMS", "TOTALS"]

#: Categories every term belongs to, in report order. ``cache`` is the key/value cache a
#: Hugging Face model returns with its output (``use_cache``, on by default, also in training).
CATEGORIES = ("activations", "loss", "inputs", "logits", "cache", "params", "grads", "optimizer")
#: Keys of ``Report.totals``: ``block`` (one block's saved bytes), the categories (device memory
#: only), ``total`` (their sum), ``saved`` (every byte autograd saves for backward, each storage
#: once, parameters excluded, device and host memory alike), ``peak`` (the most device memory
#: alive at any moment of a training step, :mod:`symmem.step`), ``max_memory_allocated`` (that
#: peak as the caching allocator counts it, :mod:`symmem.allocator`; the peak itself on the cpu
#: platform) and ``host`` (host tensors, outside every other total but ``saved``).
TOTALS = ("block", *CATEGORIES, "total", "saved", "peak", "max_memory_allocated", "host")
#: The maxima over a training step.
MAXIMA = ("peak", "max_memory_allocated")
#: The totals that are sums of terms.
SUMS = tuple(key for key in TOTALS if key not in MAXIMA)
