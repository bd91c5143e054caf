"""Shared test helpers."""

from __future__ import annotations

import importlib.util
import os

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None

if os.environ.get("SYMMEM_REQUIRE_TORCH") == "1" and not HAS_TORCH:
    raise RuntimeError(
        "SYMMEM_REQUIRE_TORCH=1 but torch is not installed: the measured tests would be skipped"
    )

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs the torch extra")
