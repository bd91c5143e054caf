from __future__ import annotations

import pickle

from symmem.cache import cached, fingerprint
from symmem.model import get_model
from symmem.platforms import get_platform
from symmem.report import _build_parts


def test_cached_report_parts_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMMEM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SYMMEM_NO_CACHE", raising=False)
    calls = []

    def build():
        calls.append(1)
        return _build_parts(get_model("nanogpt"), get_platform("cpu"), "default", "forloop")

    first = cached("report-test", build)
    second = cached("report-test", build)
    assert calls == [1]  # the second came from disk
    assert second == first
    [entry] = tmp_path.iterdir()
    assert entry.name == f"report-test-{fingerprint()}.pickle"
    assert pickle.loads(entry.read_bytes()) == first


def test_no_cache_builds_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMMEM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SYMMEM_NO_CACHE", "1")
    assert cached("x", lambda: 41) == 41 and cached("x", lambda: 42) == 42
    assert list(tmp_path.iterdir()) == []
