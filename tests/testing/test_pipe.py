"""The middlebox close frame of the memory network (a pure helper of ``_pipe``)."""

from __future__ import annotations

import random

import pytest

from trio_reconnect._hints import MAX_CLOSE_REASON_BYTES
from trio_reconnect.testing._pipe import close_frame


def test_an_unmasked_close_frame() -> None:
    frame = close_frame(1001, "bye", masked=False, rng=random.Random(1))
    assert frame == bytes([0x88, 5]) + (1001).to_bytes(2, "big") + b"bye"


def test_a_masked_close_frame_unmasks_to_the_same_payload() -> None:
    frame = close_frame(1012, "later", masked=True, rng=random.Random(1))
    assert frame[0] == 0x88
    assert frame[1] == 0x80 | 7
    key, body = frame[2:6], frame[6:]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == b"\x03\xf4later"


def test_the_reason_limit_is_the_rfc_one() -> None:
    longest = "x" * MAX_CLOSE_REASON_BYTES
    assert len(close_frame(1000, longest, masked=False, rng=random.Random(1))) == 2 + 125
    with pytest.raises(ValueError, match=f"fit in {MAX_CLOSE_REASON_BYTES} bytes"):
        close_frame(1000, longest + "x", masked=False, rng=random.Random(1))
    with pytest.raises(ValueError, match="fit in"):
        close_frame(1000, "é" * 62, masked=True, rng=random.Random(1))  # 124 bytes of UTF-8
