"""Reading the frames of protocol version 2 (PROTOCOL.md section 4), both directions, sans IO.

Everything here is pure: no trio, no sockets, no clock, no global random.
The frames themselves are the values of :mod:`._frames`; names, ids and codes
are checked by :mod:`._names`. This module reads messages into them (and
re-exports both, so that the layer has one import path).
Version 2 adds channels, presence and acknowledged publish to the handshake and
the frames of version 1 (:mod:`trio_reconnect._protocol`, which stays the codec
of the default stream). Each frame is a frozen value with an ``encode()``
method; :func:`parse_server_frame` reads what the server sends (client side),
:func:`parse_client_frame` what the client sends after ``ready`` (server side),
and :func:`parse_resume_v2` the client's first frame (server side).

Frame summary (TEXT messages, one JSON object each; keys in this order)::

    client -> server  {"type": "resume", "lastEventId": "41" | null, "clientId": "9f2c...",
                       "channels": {"room:1": "17"}}
                      {"type": "subscribe", "channel": c, "lastEventId": id | null,
                       "history": 50}                       (history: optional)
                      {"type": "unsubscribe", "channel": c}
                      {"type": "publish", "channel": c, "msgId": m, "data": <any JSON>}
    server -> client  {"type": "refused", "channel": c, "code": ..., "reason": "..."}
                      {"type": "event", "channel": c, "id": "18", "data": ...}
                      {"type": "snapshot", "channel": c, "id": "57", "data": ...}
                      {"type": "presence", "channel": c, "members": {clientId: {info}}}
                      {"type": "join", "channel": c, "clientId": k, "info": {...}}
                      {"type": "leave", "channel": c, "clientId": k}
                      {"type": "subscribed", "channel": c, "id": "57", "lost": false}
                      {"type": "unsubscribed", "channel": c}   (+ "code", "reason")
                      {"type": "ready", "id": ..., "lost": ..., "channels": [c, ...]}
                      {"type": "ack", "msgId": m, "channel": c, "id": "19"}
                      {"type": "nack", "msgId": m, "channel": c, "code": ..., "reason": "..."}

The rules the protocol page leaves to us, stated once here (those on names,
ids and codes in :mod:`._names`):

* **The default stream stays apart.** An ``event`` or ``snapshot`` frame
  without a ``channel`` key is the default stream's (section 2, parsed as
  version 1 does); with the key it belongs to a channel, and a key whose value
  is not a valid channel name makes the frame malformed (``"channel": null``
  included).
* **Optional keys.** ``lastEventId`` absent in a ``subscribe`` means null;
  ``history`` absent or null means none, else a non-negative integer;
  ``data`` absent means null (as in version 1); ``reason`` absent means ``""``;
  ``lost`` absent means false. A ``clientId`` absent from a resume frame means
  the client has none (a version 1 client). Every other key of the summary is
  required, and unknown keys are ignored.
* **Members** are a JSON object mapping a key (string) to an ``info`` JSON
  object; ``info`` that is not an object makes the frame malformed.
* **What the server answers** to a malformed client frame after ``ready``:
  ``subscribe`` and ``unsubscribe`` get ``refused`` with code ``invalid`` and
  the frame's ``channel`` echoed when it is a string (else null); ``publish``
  gets ``nack`` ``invalid`` (or ``too_large``) with its ``msgId`` and
  ``channel`` echoed when they are strings (else null). A message that is not
  a JSON object whose ``type`` is one of the three is the application's, as in
  version 1, and is returned unchanged. A malformed resume frame is a
  :class:`~trio_reconnect.ResumeProtocolError` (the connection is refused as
  in version 1), except a bad entry of its ``channels`` map, which is refused
  ``invalid`` on its own.
* **Data a server accepts** in a publish must be JSON (no NaN or Infinity,
  which Python's parser lets through), have a UTF-8 form (no lone surrogate)
  and its compact re-encoding (:func:`compact_json`) must fit the server's
  limit; else ``invalid`` or ``too_large``.
* **What the client does with a malformed server frame after ready**: a frame
  whose ``type`` is one of version 2's server types (or an ``event`` or
  ``snapshot`` with a ``channel`` key) that breaks these rules is returned as
  :class:`Malformed`, for the driver to log and drop; it never reaches the
  application.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Any, Final

from ._exceptions import ResumeProtocolError
from ._frames import (
    Ack,
    ChannelItem,
    ClientFrame,
    Join,
    Leave,
    Malformed,
    Nack,
    Presence,
    Publish,
    Refused,
    ResumeFrame,
    ServerFrame,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    encode_channel_event,
    encode_channel_snapshot,
    encode_ready_v2,
)
from ._hints import MAX_CLOSE_REASON_BYTES
from ._names import (
    _WIRE_NACK,
    _WIRE_REFUSED,
    MAX_CHANNEL_BYTES,
    MAX_CLIENT_ID_BYTES,
    MAX_ID_BYTES,
    MAX_MSG_ID_BYTES,
    NackCode,
    RandomBits,
    RefusedCode,
    _last_id_problem,
    channel_problem,
    client_id_problem,
    compact_json,
    id_problem,
    msg_id_problem,
    new_client_id,
)
from ._protocol import ServerEvent, Snapshot, _loads_object, _quote, live_event

__all__ = [
    "MAX_CHANNEL_BYTES",
    "MAX_CLIENT_ID_BYTES",
    "MAX_ID_BYTES",
    "MAX_MSG_ID_BYTES",
    "Ack",
    "ChannelItem",
    "ClientFrame",
    "Join",
    "Leave",
    "Malformed",
    "Nack",
    "NackCode",
    "Presence",
    "Publish",
    "RandomBits",
    "Refused",
    "RefusedCode",
    "ResumeFrame",
    "ServerFrame",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "channel_problem",
    "client_id_problem",
    "compact_json",
    "encode_channel_event",
    "encode_channel_snapshot",
    "encode_ready_v2",
    "handshake_frame",
    "handshake_server_frame",
    "handshake_subscribed",
    "id_problem",
    "msg_id_problem",
    "new_client_id",
    "parse_client_frame",
    "parse_ready_channels",
    "parse_resume_v2",
    "parse_server_frame",
    "resume_refusal",
]

# --------------------------------------------------------------------------- parsing helpers


class _Bad(Exception):
    """A field breaks the rules; the message says which (internal)."""


def _field(frame: dict[str, Any], key: str, problem: Any) -> Any:
    if key not in frame:
        raise _Bad(f"missing {key!r}")
    value = frame[key]
    why = problem(value)
    if why is not None:
        raise _Bad(f"{key!r}: {why}")
    return value


def _any_json(value: object) -> str | None:
    return None  # any JSON value, null included; compact_json checks the rest


def _string(value: object) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _reason(frame: dict[str, Any]) -> str:
    value = frame.get("reason", "")
    if not isinstance(value, str):
        raise _Bad("'reason' must be a string")
    return value


def _lost(frame: dict[str, Any]) -> bool:
    value = frame.get("lost", False)
    if not isinstance(value, bool):
        raise _Bad("'lost' must be a boolean")
    return value


def _code(frame: dict[str, Any], known: frozenset[str]) -> str:
    value = frame.get("code")
    if not isinstance(value, str) or value not in known:
        raise _Bad(f"'code' must be one of {sorted(known)}")
    return value


def _info(value: object) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object"


def _members(value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise _Bad("'members' must be a JSON object")
    for key, info in value.items():
        if not isinstance(info, dict):
            raise _Bad(f"the info of member {_quote(key)} must be a JSON object")
    return value


# --------------------------------------------------------------------------- client side


#: Server frame types of version 2 (``event`` and ``snapshot`` only with ``channel``).
_SERVER_TYPES: Final = frozenset(
    {"refused", "presence", "join", "leave", "subscribed", "unsubscribed", "ack", "nack"}
)


def _server_frame(frame: dict[str, Any]) -> ServerFrame:
    kind = frame["type"]
    if kind == "subscribed":  # one per channel of a resume: the frequent one first
        channel = _field(frame, "channel", channel_problem)
        return Subscribed(channel, _field(frame, "id", _string), _lost(frame))
    if kind in ("event", "snapshot"):
        channel = _field(frame, "channel", channel_problem)
        event_id = _field(frame, "id", _string)
        data = frame.get("data")
        item = ServerEvent(event_id, data) if kind == "event" else Snapshot(event_id, data)
        return ChannelItem(channel, item)
    if kind == "ack":
        return Ack(
            _field(frame, "msgId", _string),
            _field(frame, "channel", _string),
            _field(frame, "id", _string),
        )
    if kind == "nack":
        msg_id = frame.get("msgId")
        channel = frame.get("channel")
        if msg_id is not None and not isinstance(msg_id, str):
            raise _Bad("'msgId' must be a string or null")
        if channel is not None and not isinstance(channel, str):
            raise _Bad("'channel' must be a string or null")
        return Nack(msg_id, channel, NackCode(_code(frame, _WIRE_NACK)), _reason(frame))
    if kind == "refused":
        channel = frame.get("channel")
        if channel is not None and not isinstance(channel, str):
            raise _Bad("'channel' must be a string or null")
        return Refused(channel, RefusedCode(_code(frame, _WIRE_REFUSED)), _reason(frame))
    channel = _field(frame, "channel", channel_problem)
    if kind == "unsubscribed":
        code = frame.get("code")
        if code is not None and not isinstance(code, str):
            raise _Bad("'code' must be a string")
        return Unsubscribed(channel, code, _reason(frame))
    if kind == "presence":
        if "members" not in frame:
            raise _Bad("missing 'members'")
        return Presence(channel, _members(frame["members"]))
    if kind == "join":
        return Join(channel, _field(frame, "clientId", _string), _field(frame, "info", _info))
    # kind == "leave"
    return Leave(channel, _field(frame, "clientId", _string))


def _is_v2_server_frame(frame: dict[str, Any]) -> bool:
    kind = frame.get("type")
    if kind in ("event", "snapshot"):
        return "channel" in frame
    return isinstance(kind, str) and kind in _SERVER_TYPES


def parse_server_frame(
    message: str | bytes,
) -> ServerFrame | ServerEvent | Malformed | str | bytes:
    """Classify one message a version 2 client receives after ``ready``.

    Returns:
        A version 2 frame's value; a :class:`~trio_reconnect.ServerEvent` for
        the default stream's ``event`` (as version 1's ``parse_live``);
        :class:`Malformed` for a version 2 frame that breaks the rules; anything
        else unchanged (the application's message).
    """
    # Fast path, as parse_live: a frame of ours holds the text "type" literally
    # or JSON-escaped (\u...); most application messages then skip json.loads.
    if not isinstance(message, str) or ('"type"' not in message and "\\u" not in message):
        return message
    frame = _loads_object(message)
    if frame is None:
        return message
    if not _is_v2_server_frame(frame):
        event = live_event(frame)
        return message if event is None else event
    try:
        return _server_frame(frame)
    except _Bad as bad:
        return Malformed(f"{frame['type']} frame: {bad}: {_quote(message)}")


def handshake_frame(message: str | bytes) -> dict[str, Any]:
    """Decode one handshake frame, or raise :class:`~trio_reconnect.ResumeProtocolError`."""
    frame = _loads_object(message)
    if frame is None:
        raise ResumeProtocolError(f"handshake frame is not a JSON object: {_quote(message)}")
    return frame


#: A ``subscribed`` frame exactly as :meth:`Subscribed.encode` writes it, with no escape in its
#: strings (a JSON string without ``"``, ``\\`` or a control character is its own text).
_PLAIN_SUBSCRIBED: Final = re.compile(
    r'\{"type": "subscribed", "channel": "([^"\\\x00-\x1f]*)", '
    r'"id": "([^"\\\x00-\x1f]*)", "lost": (false|true)\}'
)


def handshake_subscribed(message: str | bytes, valid: Container[str] = ()) -> Subscribed | None:
    """A ``subscribed`` frame read without ``json.loads`` (``None``: read it the usual way).

    One arrives per channel of a resume. This reads only the text our
    server writes (:meth:`Subscribed.encode`) with plain strings and a valid
    channel name, which ``json.loads`` and :func:`handshake_server_frame`
    would read to the same value; any other text, a bad name included (for
    the usual error), gives ``None``. A name in ``valid`` (the names the
    handshake asked for, checked then) is not checked again.
    """
    if type(message) is not str:
        return None
    match = _PLAIN_SUBSCRIBED.fullmatch(message)
    if match is None:
        return None
    channel, event_id, lost = match.groups()
    if channel not in valid and channel_problem(channel) is not None:
        return None
    return Subscribed(channel, event_id, lost == "true")


def handshake_server_frame(frame: dict[str, Any], message: str | bytes) -> ServerFrame | None:
    """The version 2 value of a decoded handshake frame (None: a default-stream frame).

    Raises:
        ResumeProtocolError: a version 2 frame that breaks the rules.
    """
    if not _is_v2_server_frame(frame):
        return None
    try:
        return _server_frame(frame)
    except _Bad as bad:
        raise ResumeProtocolError(
            f"malformed {frame['type']} frame: {bad}: {_quote(message)}"
        ) from None


def parse_ready_channels(frame: dict[str, Any], message: str | bytes) -> tuple[str, ...] | None:
    """The ``channels`` of a ``ready`` frame (None: absent, a version 1 server).

    Raises:
        ResumeProtocolError: ``channels`` is not a list of distinct strings.
    """
    if "channels" not in frame:
        return None
    channels = frame["channels"]
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ResumeProtocolError(f"ready's channels must be a list of strings: {_quote(message)}")
    if len(set(channels)) != len(channels):
        raise ResumeProtocolError(f"ready lists a channel twice: {_quote(message)}")
    return tuple(channels)


# --------------------------------------------------------------------------- server side


def parse_resume_v2(message: str | bytes) -> tuple[ResumeFrame, tuple[Refused, ...]]:
    """Read the client's resume frame, version 1 or 2.

    Returns:
        The frame with its valid channel entries, and the ``refused`` answers
        (code ``invalid``) for the entries that break the rules (a bad name, a
        position that is not a string id).

    Raises:
        ResumeProtocolError: not a resume frame; ``lastEventId`` missing or not
            a string or null; ``clientId`` present but not valid; ``channels``
            present but not a JSON object, or present without a ``clientId``.
    """
    frame = _loads_object(message)
    if frame is None or frame.get("type") != "resume":
        raise ResumeProtocolError(f"expected a resume frame, got {_quote(message)}")
    last = frame.get("lastEventId")
    if "lastEventId" not in frame or not (last is None or isinstance(last, str)):
        raise ResumeProtocolError(
            f"resume frame needs lastEventId as a string or null, got {_quote(message)}"
        )
    client_id = frame.get("clientId")
    if client_id is not None and (why := client_id_problem(client_id)) is not None:
        raise ResumeProtocolError(f"resume frame: {why}")
    channels = frame.get("channels")
    if channels is None:
        return ResumeFrame(last, client_id), ()
    if not isinstance(channels, dict):
        raise ResumeProtocolError(f"resume frame: channels is not an object: {_quote(message)}")
    if client_id is None:
        raise ResumeProtocolError("resume frame: channels without a clientId")
    valid: list[tuple[str, str]] = []
    refused: list[Refused] = []
    for channel, position in channels.items():
        why = channel_problem(channel) or (
            "the position must be a string id" if not isinstance(position, str) else None
        )
        why = why or id_problem(position)
        if why is None:
            valid.append((channel, position))
        else:
            refused.append(Refused(channel, RefusedCode.INVALID, why))
    return ResumeFrame(last, client_id, tuple(valid)), tuple(refused)


def resume_refusal(error: ResumeProtocolError, message: str) -> str:
    """The close reason for a refused resume frame: a short form of ``error``.

    The error's text without the quoted frame (the client sent it), cut to
    :data:`~trio_reconnect.MAX_CLOSE_REASON_BYTES` bytes of UTF-8 (an
    ellipsis marks a cut): "expected a resume frame", "resume frame: channels
    without a clientId", "resume frame: a clientId must be at most 128 bytes
    of UTF-8, got 200 characters".
    """
    text = str(error)
    quoted = _quote(message)
    for separator in (", got ", ": "):
        text = text.removesuffix(separator + quoted)
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return encoded.decode("utf-8")
    cut = encoded[: MAX_CLOSE_REASON_BYTES - len("...")].decode("utf-8", "ignore")
    return cut + "..."


#: Client frame types after ``ready`` (anything else is the application's).
_CLIENT_TYPES: Final = frozenset({"subscribe", "unsubscribe", "publish"})


def _history(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "must be a non-negative integer or null"
    return None


def parse_client_frame(
    message: str | bytes, *, max_data_bytes: int | None = None
) -> ClientFrame | Refused | Nack | str | bytes:
    """Classify one message the server receives after ``ready``.

    Args:
        message: The message as received.
        max_data_bytes: The server's limit on a publish's :func:`compact_json`
            (``None``: no limit).

    Returns:
        A valid :data:`ClientFrame`; or the answer to send to a malformed one
        (:class:`Refused` for ``subscribe``/``unsubscribe``, :class:`Nack` for
        ``publish``; the connection goes on); or the message unchanged when it
        is the application's own.
    """
    if not isinstance(message, str) or ('"type"' not in message and "\\u" not in message):
        return message
    frame = _loads_object(message)
    kind = None if frame is None else frame.get("type")
    if frame is None or not isinstance(kind, str) or kind not in _CLIENT_TYPES:
        return message
    raw_channel = frame.get("channel")
    channel = raw_channel if isinstance(raw_channel, str) else None
    if kind == "publish":
        raw_msg_id = frame.get("msgId")
        msg_id = raw_msg_id if isinstance(raw_msg_id, str) else None
        try:
            _field(frame, "channel", channel_problem)
            _field(frame, "msgId", msg_id_problem)
            compact = compact_json(_field(frame, "data", _any_json))
        except (_Bad, ValueError) as bad:
            return Nack(msg_id, channel, NackCode.INVALID, str(bad))
        assert channel is not None
        assert msg_id is not None
        if max_data_bytes is not None and len(compact) > max_data_bytes:
            return Nack(
                msg_id,
                channel,
                NackCode.TOO_LARGE,
                f"data is {len(compact)} bytes, the limit is {max_data_bytes}",
            )
        return Publish(channel, msg_id, frame.get("data"), compact)
    try:
        _field(frame, "channel", channel_problem)
        if kind == "unsubscribe":
            assert channel is not None
            return Unsubscribe(channel)
        last = frame.get("lastEventId")
        why = _last_id_problem(last)
        if why is not None:
            raise _Bad(f"'lastEventId': {why}")
        history = frame.get("history")
        why = _history(history)
        if why is not None:
            raise _Bad(f"'history': {why}")
    except _Bad as bad:
        return Refused(channel, RefusedCode.INVALID, str(bad))
    assert channel is not None
    return Subscribe(channel, last, history)
