"""The pure helpers of ``_pipe``: the middlebox close frame, the walk over server frames."""

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


def test_frame_at_walks_server_frames_of_every_length_form() -> None:
    from trio_reconnect.testing._pipe import OP_CLOSE, OP_TEXT, frame_at

    short = bytes([0x81, 3]) + b"abc"
    medium = bytes([0x81, 126]) + (300).to_bytes(2, "big") + b"m" * 300
    long = bytes([0x88, 127]) + (70_000).to_bytes(8, "big") + b"l" * 70_000
    buffer = short + medium + long
    assert frame_at(buffer) == (OP_TEXT, 2, 5)
    assert frame_at(buffer, 5) == (OP_TEXT, 9, 309)
    assert frame_at(buffer, 309) == (OP_CLOSE, 319, len(buffer))
    # Not all there yet: the header, the extended length, or the payload.
    assert frame_at(short[:1]) is None
    assert frame_at(medium[:3]) is None
    assert frame_at(long[:9]) is None
    assert frame_at(short[:4]) is None
    assert frame_at(buffer, len(buffer)) is None
