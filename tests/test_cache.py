from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import sympy

from symmem.cache import cached, entry_path, fingerprint, read_entry
from symmem.codec import DecodeError, decode, encode
from symmem.model import get_model
from symmem.platforms import get_platform
from symmem.report import STORED_CLASSES, _build_parts


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMMEM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SYMMEM_NO_CACHE", raising=False)
    return tmp_path


def _parts():
    return _build_parts(get_model("nanogpt"), get_platform("cpu"), "default", "forloop")


def test_cached_report_parts_round_trip(cache):
    calls = []

    def build():
        calls.append(1)
        return _parts()

    first = cached("report-test", build, STORED_CLASSES)
    second = cached("report-test", build, STORED_CLASSES)
    assert calls == [1]  # the second came from disk
    assert second == first
    # Properties cached on the steps (the peaks' texts) travel with them.
    steps = second[6]
    assert all("peak_text" in vars(s) for s in steps)
    assert [s.peak_text for s in steps] == [str(s.peak) for s in steps]
    [entry] = cache.iterdir()
    assert entry.name == f"report-test-{fingerprint()}.json"
    header, _, body = entry.read_bytes().partition(b"\n")
    assert header.startswith(b"symmem-cache ")
    json.loads(body)  # plain data


def test_no_cache_builds_every_time(cache, monkeypatch):
    monkeypatch.setenv("SYMMEM_NO_CACHE", "1")
    assert cached("x", lambda: 41) == 41 and cached("x", lambda: 42) == 42
    assert list(cache.iterdir()) == []


def test_a_failed_build_leaves_no_announcement_behind(cache, monkeypatch, capsys):
    import symmem.cache

    monkeypatch.setattr(symmem.cache, "ANNOUNCE_AFTER_S", 0.05)

    def build():
        raise ValueError("bad config")

    with pytest.raises(ValueError, match="bad config"):
        cached("doomed", build)
    time.sleep(0.3)  # long past the announcement's delay
    assert capsys.readouterr().err == ""


def test_a_slow_build_is_announced(cache, monkeypatch, capsys):
    import symmem.cache

    monkeypatch.setattr(symmem.cache, "ANNOUNCE_AFTER_S", 0.05)
    assert cached("slow", lambda: time.sleep(0.3) or 7) == 7
    err = capsys.readouterr().err
    assert err.startswith("symmem: building slow (first use with this cache")
    assert "symmem: built slow in " in err


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # an interrupted copy
        lambda raw: raw[:100] + b"\x00" * 64 + raw[164:],  # a disk error
        lambda raw: b"",
        lambda raw: b"\x80\x04\x95garbage",  # a pickle, or anything else
        lambda raw: raw.replace(b'"i"', b'"z"', 1),  # a changed byte without a new hash
    ],
)
def test_a_damaged_entry_is_rebuilt_and_replaced(cache, damage):
    value = {"x": sympy.Max(sympy.Symbol("B") * 3, sympy.ceiling(sympy.Symbol("S") / 32)), "n": 7}
    cached("entry", lambda: value)
    path = entry_path("entry")
    path.write_bytes(damage(path.read_bytes()))
    assert read_entry(path) is None
    calls = []
    assert cached("entry", lambda: calls.append(1) or value) == value
    assert calls == [1]
    assert read_entry(path) is not None  # replaced by a good entry


def test_an_entry_with_a_valid_hash_but_foreign_content_is_rebuilt(cache):
    from symmem.cache import write_entry

    write_entry(entry_path("entry"), {"nodes": [["f", "exec", [0]]], "root": {"e": 0}})
    assert cached("entry", lambda: 5) == 5


def test_decode_refuses_what_encode_does_not_write():
    with pytest.raises(DecodeError):
        decode({"nodes": [["f", "Function", []]], "root": {"e": 0}}, ())
    with pytest.raises(DecodeError):
        decode({"nodes": [], "root": {"o": "Term", "a": {}}}, ())  # a class not allowed
    with pytest.raises(TypeError):
        encode(sympy.sin(sympy.Symbol("x")), ())


def test_symbols_keep_their_assumptions():
    m = sympy.Symbol("M", positive=True)
    back = decode(json.loads(json.dumps(encode(m + 1, ()))), ())
    assert back == m + 1 and back.free_symbols == {m}


def test_stale_entries_of_the_same_name_only_are_removed(cache):
    other = cache / "entry-full-0123456789abcdef.json"
    old = cache / "entry-0123456789abcdef.json"
    other.write_text("x")
    old.write_text("x")
    cached("entry", lambda: 1)
    assert other.exists() and not old.exists()


@pytest.mark.slow
def test_four_concurrent_cold_starts_agree(cache):
    code = (
        "from symmem import Config, build_report;"
        "r = build_report('cpu', 'math');"
        "print(r.at(Config.notebook()).totals['peak'], len(r.evaluator))"
    )
    env = os.environ | {"SYMMEM_CACHE_DIR": str(cache)}
    env.pop("SYMMEM_NO_CACHE", None)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(4)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    # Each cold start said what it was building (it takes over a second).
    assert all(b"building report-nanogpt-cpu-math" in err for _, err in outputs)
    [entry] = [p for p in cache.iterdir() if p.suffix == ".json"]
    assert read_entry(entry) is not None
    warm = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=env, check=True, timeout=600
    )
    assert warm.stdout == outputs[0][0] and b"building" not in warm.stderr
