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


@pytest.fixture(autouse=True)
def _no_first_build_note(monkeypatch):
    """In-process calls never print the note a first build of a cache entry prints after a
    second: whether it appears depends on which test happens to build an entry first. The
    tests of the note set its delay themselves (tests/test_cache.py), and subprocesses keep it."""
    import symmem.cache

    monkeypatch.setattr(symmem.cache, "ANNOUNCE_AFTER_S", 10.0**9)
