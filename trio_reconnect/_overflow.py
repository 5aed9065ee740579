"""When the connection's reader may buffer past ``max_queue``: while publishes wait for answers.

Pure: no trio. One connection carries everything, in order: default-stream
items, channel frames and the ``ack``/``nack`` of each publish. The reader
puts each default-stream item into the application's buffer and, past
``max_queue`` items, waits for the application to read (backpressure that
reaches the server, and that the pinger counts as a slow consumer). An
application that only publishes and never reads the default stream would then
never see its ``ack``\\s: they wait behind the unread items, and ``publish``
never returns.

The rule, stated once (:func:`reader_must_wait`):

* **No publish pending**: the reader waits while the buffer holds
  ``max_queue`` items or more, exactly as without publishes.
* **A publish pending** (the outbox holds one without an answer): the reader
  goes on past ``max_queue`` items, so that the answers behind them are read,
  until the buffer holds ``overflow_bytes`` bytes of frames (the size of each
  frame as received, :func:`frame_size`); then it waits as before.

The bound is the client's ``outbox_bytes`` (1 MiB by default), not a new
option: it is already the memory the application gave to publishes waiting
for their answers, in the same unit (bytes of frames), so while publishes
are pending the buffer holds at most ``max_queue`` items or ``outbox_bytes``
bytes, whichever is more, plus the one message being added (at most
``max_message_size``). An application that publishes more (a larger outbox)
gets a larger allowance for the traffic in between. Memory stays bounded;
past the bound the ``ack``\\s wait for the application to read, as before.
"""

from __future__ import annotations

__all__ = ["frame_size", "reader_must_wait"]


def reader_must_wait(
    *, items: int, size: int, max_items: int, overflow_bytes: int, publishing: bool
) -> bool:
    """Whether the reader must wait for the application before it reads on.

    Args:
        items: Items in the buffer (the one just added included).
        size: Their frames' bytes (:func:`frame_size`).
        max_items: ``max_queue``.
        overflow_bytes: The bound past ``max_queue`` while a publish is pending.
        publishing: Whether a publish waits for its answer.
    """
    if items < max_items:
        return False
    return not publishing or size >= overflow_bytes


def frame_size(message: str | bytes) -> int:
    """A received frame's size in bytes (UTF-8 for text), as the outbox measures its own."""
    if isinstance(message, bytes) or message.isascii():
        return len(message)
    return len(message.encode("utf-8", "surrogatepass"))
