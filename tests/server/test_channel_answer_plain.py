"""ChannelAnswerer.answer_plain: a resume's frequent answer without a wait, as answer() gives it."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from trio_reconnect.server._chananswer import ChannelAnswerer
from trio_reconnect.server._chanfeed import ChannelFeed, Subscription
from trio_reconnect.server._channelbase import ChannelRead, ChannelRequest
from trio_reconnect.server._logbase import LoggedEvent


class _Sink:
    def feed(self, frames: Any) -> None:
        pass

    def close(self, code: int | None, reason: str | None) -> None:
        pass


def _answerer(snapshot: Any = None) -> ChannelAnswerer:
    feed = ChannelFeed(None, 100, 1.0)  # type: ignore[arg-type]  # no store call here
    return ChannelAnswerer(None, feed, None, snapshot, 100, 1000, 64, 10.0, lambda c: None)  # type: ignore[arg-type]


def _subscription(answerer: ChannelAnswerer, channel: str) -> Subscription:
    return Subscription(channel, _Sink(), 64, lambda: None, counts=answerer.counts)


async def _answer(
    answerer: ChannelAnswerer, request: ChannelRequest, read: ChannelRead
) -> list[str]:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    await answerer.answer(send, _subscription(answerer, request.channel), request, read)
    return sent


@pytest.mark.parametrize(
    "request_",
    [ChannelRequest("room", "7"), ChannelRequest("room", None, 3), ChannelRequest("r\u00e9", "7")],
)
async def test_the_same_frame_and_counts_as_answer(request_: ChannelRequest) -> None:
    read = ChannelRead(request_.channel, "7", [])
    by_answer = _answerer()
    with trio.fail_after(1):
        sent = await _answer(by_answer, request_, read)
    plain = _answerer()
    held: list[str] = []
    subscription = _subscription(plain, request_.channel)
    assert plain.answer_plain(held, subscription, request_, read) is False
    assert held == sent
    assert attrs.asdict(plain.counts) == attrs.asdict(by_answer.counts)
    assert plain.counts.channel_subscribed == 1
    assert subscription.covered == 7
    assert not subscription.waiting


@pytest.mark.parametrize(
    ("request_", "read", "snapshot"),
    [
        (ChannelRequest("room", "5"), ChannelRead("room", "7", [LoggedEvent("6", 1)]), None),
        (ChannelRequest("room", "5"), ChannelRead("room", "7", None), None),
        (ChannelRequest("room", None, 0), ChannelRead("room", "7", []), lambda c: ("7", {})),
    ],
)
def test_not_plain_is_left_to_answer(
    request_: ChannelRequest, read: ChannelRead, snapshot: Any
) -> None:
    answerer = _answerer(snapshot)
    held: list[str] = []
    subscription = _subscription(answerer, "room")
    assert answerer.answer_plain(held, subscription, request_, read) is None
    assert held == []
    assert subscription.covered is None


def test_a_closed_subscription_sends_nothing() -> None:
    answerer = _answerer()
    held: list[str] = []
    subscription = _subscription(answerer, "room")
    subscription.closed = True
    request = ChannelRequest("room", "7")
    assert answerer.answer_plain(held, subscription, request, ChannelRead("room", "7", [])) is False
    assert held == []
    assert answerer.counts.channel_subscribed == 0


def test_a_buffered_gap_asks_for_a_repair() -> None:
    answerer = _answerer()
    held: list[str] = []
    subscription = _subscription(answerer, "room")
    subscription.offer([LoggedEvent("9", 1)])  # buffered while answering: 8 is missing
    request = ChannelRequest("room", "7")
    assert answerer.answer_plain(held, subscription, request, ChannelRead("room", "7", [])) is True
    assert len(held) == 1
