"""Checking symmem against PyTorch.

:func:`compare` and :func:`assert_matches` need no torch. :func:`measure` and the model in
:mod:`symmem.validate.nanogpt` need the ``torch`` extra (``pip install 'symmem[torch]'``).
"""

from symmem.validate.compare import Comparison, Row, assert_matches, compare

__all__ = ["Comparison", "Row", "assert_matches", "compare"]
