"""The minimal RESP2 wire format used for the hot EVALSHA."""

from __future__ import annotations

import pytest

from bookingguard.resilience.stores.resp import RespError, _Incomplete, _parse, pack


def test_pack_writes_bulk_strings() -> None:
    """A command is an array of bulk strings."""
    assert pack("EVALSHA", b"ab", "2") == b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n"


def test_parse_reads_the_scripts_reply() -> None:
    """Arrays of integers, bulk strings, nil and nested errors are read in one pass."""
    wire = bytearray(b"*5\r\n:1\r\n$6\r\nclosed\r\n$-1\r\n-ERR nested\r\n*1\r\n+OK\r\n")
    reply, end = _parse(wire, 0)
    assert reply[:3] == [1, b"closed", None]
    assert isinstance(reply[3], RespError)
    assert reply[4] == ["OK"]
    assert end == len(wire)


def test_parse_waits_for_a_whole_reply() -> None:
    """A reply cut mid-bulk-string is incomplete, not misread."""
    with pytest.raises(_Incomplete):
        _parse(bytearray(b"*2\r\n:1\r\n$6\r\nclo"), 0)
