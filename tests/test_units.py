"""Byte counts for people: every unit up to yotta, both ways, and huge counts kept short."""

from __future__ import annotations

import pytest

from symmem.errors import BudgetError
from symmem.units import format_bytes, parse_bytes


@pytest.mark.parametrize(
    ("nbytes", "binary", "expected"),
    [
        (0, True, "0 B"),
        (1023, True, "1023 B"),
        (1024, True, "1.00 KiB"),
        (1000, False, "1.00 kB"),
        (2**40, True, "1.00 TiB"),
        (2**50, True, "1.00 PiB"),
        (3 * 2**60, True, "3.00 EiB"),
        (2**70, True, "1.00 ZiB"),
        (2**80, True, "1.00 YiB"),
        (1023 * 2**80, True, "1.02e+03 YiB"),
        (999 * 2**80, True, "999.00 YiB"),
        (10**15, False, "1.00 PB"),
        (10**18, False, "1.00 EB"),
        (10**21, False, "1.00 ZB"),
        (10**24, False, "1.00 YB"),
        (10**27, False, "1.00e+03 YB"),
        # Printed as "3053247928619384832.00 TiB" before units went past TiB.
        (3053247928619384832 * 2**40, True, "2.78e+06 YiB"),
        (-3 * 2**50, True, "-3.00 PiB"),
    ],
)
def test_format_bytes(nbytes, binary, expected):
    assert format_bytes(nbytes, binary=binary) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2PB", 2 * 10**15),
        ("2 PiB", 2 * 2**50),
        ("1eb", 10**18),
        ("1 EiB", 2**60),
        ("1ZB", 10**21),
        ("1 zib", 2**70),
        ("1YB", 10**24),
        ("1.5 YiB", 3 * 2**79),
    ],
)
def test_parse_bytes_past_tera(text, expected):
    assert parse_bytes(text) == expected


def test_every_printed_unit_reads_back():
    for power in range(0, 90, 5):
        text = format_bytes(2**power)
        if "e+" not in text:
            assert parse_bytes(text) == 2**power, text


def test_unknown_unit_names_the_ones_there_are():
    with pytest.raises(BudgetError, match=r"\(B, kB, MB, GB, TB, PB, EB, ZB, YB, KiB, .*, YiB\)"):
        parse_bytes("5 RB")
