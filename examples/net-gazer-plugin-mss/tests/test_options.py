"""MSS option parsing on byte literals."""

from __future__ import annotations

import pytest

from net_gazer_plugin_mss.options import mss_option


def test_the_mss_among_linux_syn_options() -> None:
    # MSS 1460, SACK permitted, timestamps, NOP, window scale 7: what Linux sends.
    opts = (
        bytes.fromhex("020405b4")
        + b"\x04\x02"
        + bytes.fromhex("080a0000000100000000")
        + b"\x01\x03\x03\x07"
    )
    assert mss_option(opts) == 1460


def test_nops_before_the_mss_and_none_without_it() -> None:
    assert mss_option(b"\x01\x01\x02\x04\x02\x18") == 536
    assert mss_option(b"") is None
    assert mss_option(b"\x01\x01\x04\x02") is None
    assert mss_option(b"\x00\x02\x04\x05\xb4") is None  # after the end of the list


@pytest.mark.parametrize(
    "opts",
    [b"\x02", b"\x02\x04\x05", b"\x02\x03\x05\xb4", b"\x08\x01", b"\x04\x00\x02\x04\x05\xb4"],
)
def test_malformed_options_raise(opts: bytes) -> None:
    with pytest.raises(ValueError):
        mss_option(opts)
