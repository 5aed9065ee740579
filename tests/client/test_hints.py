"""Server retry hints (trio_reconnect/_hints.py; PROTOCOL.md section 1). Pure."""

from __future__ import annotations

import calendar
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_reconnect._hints import (
    FATAL_CLOSE_CODES,
    HINTED_CLOSE_CODES,
    MAX_CLOSE_REASON_BYTES,
    RetryAdvice,
    Verdict,
    classify_close,
    classify_rejection,
    format_close_reason,
    is_fatal_close_code,
    parse_retry_after_header,
    parse_retry_after_reason,
)

RETRY = Verdict.RETRY
FATAL = Verdict.FATAL
HINT = '{"reason": "restarting", "retryAfter": 1375}'

# Wed, 21 Oct 2015 07:28:00 GMT
DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
DATE_TS = calendar.timegm((2015, 10, 21, 7, 28, 0))


def test_constants() -> None:
    assert MAX_CLOSE_REASON_BYTES == 123
    assert frozenset({1001, 1011, 1012, 1013, 1014}) == HINTED_CLOSE_CODES
    assert frozenset({1002, 1003, 1007, 1008, 1009, 1010}) == FATAL_CLOSE_CODES
    assert DATE_TS == 1445412480


# --------------------------------------------------------------------------- classify_close


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013, 1014])
def test_hinted_codes_retry_with_the_hint(code: int) -> None:
    assert classify_close(code, HINT) == RetryAdvice(RETRY, 1.375)
    assert classify_close(code, '{"retryAfter": 0}') == RetryAdvice(RETRY, 0.0)
    assert classify_close(code, None) == RetryAdvice(RETRY, None)
    assert classify_close(code, "") == RetryAdvice(RETRY, None)
    assert classify_close(code, "going away") == RetryAdvice(RETRY, None)


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 1009, 1010, 4000, 4001, 4500, 4998, 4999])
def test_fatal_codes(code: int) -> None:
    assert is_fatal_close_code(code)
    # A hint in a fatal close does not make it retryable.
    assert classify_close(code, HINT) == RetryAdvice(FATAL, None)
    assert classify_close(code, None) == RetryAdvice(FATAL, None)


@pytest.mark.parametrize(
    "code", [1000, 1004, 1005, 1006, 1015, 1016, 2999, 3000, 3999, 5000, 0, -1, 65535]
)
def test_other_codes_retry_without_a_hint(code: int) -> None:
    assert not is_fatal_close_code(code)
    assert classify_close(code, None) == RetryAdvice(RETRY, None)
    # The reason is NOT read outside the five hinted codes.
    assert classify_close(code, HINT) == RetryAdvice(RETRY, None)


def test_a_hint_in_a_normal_close_is_not_read() -> None:
    assert classify_close(1000, '{"retryAfter": 5000}') == RetryAdvice(RETRY, None)
    assert classify_close(1000, '{"retryAfter": 5000}').hint is None


@pytest.mark.parametrize("code", [3999, 4000, 4999, 5000])
def test_application_range_boundaries(code: int) -> None:
    expected = FATAL if 4000 <= code <= 4999 else RETRY
    assert classify_close(code, None).verdict is expected


def test_retry_advice_defaults_to_no_hint() -> None:
    assert RetryAdvice(RETRY) == RetryAdvice(RETRY, None)
    assert RetryAdvice(RETRY).hint is None


# --------------------------------------------------------------------------- reason parsing


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ('{"retryAfter": 1375}', 1.375),
        ('{"retryAfter": 1375.5}', 1.3755),
        ('{"retryAfter": 0}', 0.0),
        ('{"retryAfter": 0.0}', 0.0),
        ('{"retryAfter": -0.0}', 0.0),
        ('{"retryAfter": 300000}', 300.0),
        ('{"reason": "restarting", "retryAfter": 250, "extra": [1, 2]}', 0.25),
        ('  {"retryAfter": 7}  ', 0.007),
        # The last of duplicated keys wins (json.loads semantics).
        ('{"retryAfter": 1, "retryAfter": 2000}', 2.0),
    ],
)
def test_reason_with_a_valid_hint(reason: str, expected: float) -> None:
    assert parse_retry_after_reason(reason) == expected


def test_reason_float_hint_is_exact() -> None:
    assert parse_retry_after_reason('{"retryAfter": 1375.5}') == 1375.5 / 1000.0


@pytest.mark.parametrize(
    "reason",
    [
        None,
        "",
        "restarting",
        "{",
        "{retryAfter: 5}",
        "{'retryAfter': 5}",
        "[]",
        "[1375]",
        '[{"retryAfter": 1375}]',
        '"retryAfter"',
        "1375",
        "1375.5",
        "null",
        "true",
        "{}",
        '{"retryafter": 1375}',
        '{"RetryAfter": 1375}',
        '{"retry_after": 1375}',
        '{"retryAfter": -1}',
        '{"retryAfter": -0.001}',
        '{"retryAfter": -1e999}',
        '{"retryAfter": NaN}',
        '{"retryAfter": Infinity}',
        '{"retryAfter": -Infinity}',
        '{"retryAfter": "123"}',
        '{"retryAfter": "1375"}',
        '{"retryAfter": ""}',
        '{"retryAfter": true}',
        '{"retryAfter": false}',
        '{"retryAfter": null}',
        '{"retryAfter": {"ms": 1375}}',
        '{"retryAfter": [1375]}',
        '{"nested": {"retryAfter": 1375}}',
        '{"retryAfter": 1375',
        "\x00\x01\x02",
        "\ud800\udfff",
        '\ufeff{"retryAfter": 5}',  # a BOM: json.loads refuses it
        "é" * 50,
        "[" * 100_000,
        '{"a":' * 100_000,
        '{"retryAfter": ' + "[" * 100_000,
        # More than sys.int_info's 4300-digit limit: json.loads raises ValueError.
        '{"retryAfter": 1' + "0" * 5000 + "}",
    ],
)
def test_hostile_reasons_give_no_hint(reason: str | None) -> None:
    assert parse_retry_after_reason(reason) is None


def test_a_huge_int_hint_becomes_inf_not_an_error() -> None:
    # "An integer too large to be a float counts as infinite and is clamped to
    # max_server_delay" (docs/reference/protocol.md): here it is inf; the pacer clamps it.
    assert parse_retry_after_reason(json.dumps({"retryAfter": 10**400})) == math.inf
    assert classify_close(1012, json.dumps({"retryAfter": 10**400})) == RetryAdvice(RETRY, math.inf)


def test_a_huge_float_literal_is_finite_json_and_becomes_inf() -> None:
    # 1e999 is a finite JSON number that a float cannot hold: like 10**400 it
    # becomes inf, which the pacer clamps. NaN and Infinity are not JSON: ignored.
    assert parse_retry_after_reason('{"retryAfter": 1e999}') == math.inf
    assert parse_retry_after_reason('{"retryAfter": Infinity}') is None
    assert parse_retry_after_reason('{"retryAfter": NaN}') is None


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_parse_reason_never_raises_on_text(reason: str) -> None:
    result = parse_retry_after_reason(reason)
    assert result is None or (isinstance(result, float) and result >= 0.0)


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
)


@given(
    st.one_of(
        _json_scalars,
        st.lists(_json_scalars, max_size=3),
        st.dictionaries(st.text(max_size=5), _json_scalars, max_size=3),
    ),
    st.dictionaries(st.text(max_size=8), _json_scalars, max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_parse_reason_on_json_objects(value: object, extra: dict[str, object]) -> None:
    reason = json.dumps({**extra, "retryAfter": value})
    result = parse_retry_after_reason(reason)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        assert result is None
    elif isinstance(value, int):
        try:
            expected = float(value) / 1000.0
        except OverflowError:
            expected = math.inf
        assert result == expected
    elif math.isfinite(value):
        assert result == value / 1000.0
    else:
        assert result is None


@given(st.integers(min_value=0, max_value=10**12))
@settings(max_examples=200, deadline=None)
def test_format_and_parse_round_trip(ms: int) -> None:
    text = format_close_reason(ms / 1000, "r")
    assert json.loads(text) == {"reason": "r", "retryAfter": ms}
    assert parse_retry_after_reason(text) == ms / 1000.0
    assert classify_close(1012, text) == RetryAdvice(RETRY, ms / 1000.0)


@given(st.integers(), st.one_of(st.none(), st.text(max_size=130)))
@settings(max_examples=300, deadline=None)
def test_classify_close_never_raises(code: int, reason: str | None) -> None:
    advice = classify_close(code, reason)
    if code in FATAL_CLOSE_CODES or 4000 <= code <= 4999:
        assert advice == RetryAdvice(FATAL, None)
    else:
        assert advice.verdict is RETRY
        if code not in HINTED_CLOSE_CODES:
            assert advice.hint is None


# --------------------------------------------------------------------------- Retry-After header


NOW = float(DATE_TS) - 120.5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"3", 3.0),
        ("3", 3.0),
        ("  7 ", 7.0),
        (b"\t7\r\n", 7.0),
        ("0", 0.0),
        ("000", 0.0),
        ("0120", 120.0),
        ("86400", 86400.0),
        ("9" * 400, math.inf),
        ("1" + "0" * 5000, math.inf),
    ],
)
def test_header_delta_seconds(value: bytes | str, expected: float) -> None:
    assert parse_retry_after_header(value, NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        b"",
        "   ",
        "abc",
        b"abc",
        "-1",
        "-0",
        "+3",
        "1.5",
        "1e3",
        "3 s",
        "0x10",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: isdigit() but not ASCII
        "\u00b2",  # SUPERSCRIPT TWO
        b"\xff\xfe",
        "Wed, 99 Foo 2015 99:99:99 GMT",
        "Wed, 21 Oct 2015",
        "Sat, 01 Jan 10000 00:00:00 GMT",  # year out of range
        "tomorrow",
        "\x00",
    ],
)
def test_header_garbage_gives_no_hint(value: bytes | str) -> None:
    assert parse_retry_after_header(value, NOW) is None


def test_header_http_date_in_the_future_is_exact_seconds() -> None:
    assert parse_retry_after_header(DATE, NOW) == 120.5
    assert parse_retry_after_header(DATE.encode("ascii"), NOW) == 120.5
    assert parse_retry_after_header(f"  {DATE}  ", NOW) == 120.5
    assert parse_retry_after_header(DATE, float(DATE_TS) - 3) == 3.0


def test_header_http_date_obsolete_rfc850_form() -> None:
    assert parse_retry_after_header("Wednesday, 21-Oct-15 07:28:00 GMT", NOW) == 120.5


def test_header_http_date_with_a_numeric_offset() -> None:
    # 09:28 at +02:00 is 07:28 GMT.
    assert parse_retry_after_header("Wed, 21 Oct 2015 09:28:00 +0200", NOW) == 120.5


def test_header_http_date_now_or_in_the_past_is_zero() -> None:
    assert parse_retry_after_header(DATE, float(DATE_TS)) == 0.0
    assert parse_retry_after_header(DATE, float(DATE_TS) + 0.5) == 0.0
    assert parse_retry_after_header("Sun, 06 Nov 1994 08:49:37 GMT", float(DATE_TS)) == 0.0
    assert parse_retry_after_header("Thu, 01 Jan 1970 00:00:00 GMT", 1e12) == 0.0


def test_header_far_future_date() -> None:
    far = calendar.timegm((9999, 12, 31, 23, 59, 59))
    assert parse_retry_after_header("Fri, 31 Dec 9999 23:59:59 GMT", NOW) == far - NOW
    # A negative offset pushes the instant past the year 9999 in UTC: still no error.
    late = "Fri, 31 Dec 9999 23:59:59 -2359"
    assert parse_retry_after_header(late, NOW) == far + 86340 - NOW


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 2015 07:28:00",  # no zone at all
        "Wed, 21 Oct 2015 07:28:00 -0000",  # RFC 5322 "local time unknown"
        "Wed Oct 21 07:28:00 2015",  # asctime-date: obsolete but legal, no zone
    ],
)
def test_header_date_without_a_time_zone_is_gmt(value: str) -> None:
    # RFC 9110: every HTTP-date is GMT.
    expected = parse_retry_after_header("Wed, 21 Oct 2015 07:28:00 GMT", NOW)
    assert expected is not None
    assert parse_retry_after_header(value, NOW) == expected


@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)), st.floats(0, 4e9))
@settings(max_examples=300, deadline=None)
def test_parse_header_never_raises(value: str | bytes, now: float) -> None:
    result = parse_retry_after_header(value, now)
    assert result is None or (isinstance(result, float) and result >= 0.0)


@given(st.integers(min_value=0, max_value=10**30))
@settings(max_examples=100, deadline=None)
def test_parse_header_delta_seconds_property(seconds: int) -> None:
    assert parse_retry_after_header(str(seconds), 0.0) == float(seconds)
    assert parse_retry_after_header(f" {seconds} ".encode(), 0.0) == float(seconds)


# --------------------------------------------------------------------------- classify_rejection


@pytest.mark.parametrize("status", [503, 429])
def test_hinted_statuses_read_retry_after(status: int) -> None:
    headers = [(b"content-type", b"text/plain"), (b"retry-after", b"3")]
    assert classify_rejection(status, headers, NOW) == RetryAdvice(RETRY, 3.0)
    date_headers = [(b"Retry-After", DATE.encode())]
    assert classify_rejection(status, date_headers, NOW) == RetryAdvice(RETRY, 120.5)


@pytest.mark.parametrize("name", [b"retry-after", b"Retry-After", b"RETRY-AFTER", b"rEtRy-AfTeR"])
def test_header_name_is_case_insensitive(name: bytes) -> None:
    assert classify_rejection(503, [(name, b"7")], NOW) == RetryAdvice(RETRY, 7.0)


def test_hinted_status_without_the_header() -> None:
    assert classify_rejection(503, [], NOW) == RetryAdvice(RETRY, None)
    assert classify_rejection(429, [(b"x-retry-after", b"5")], NOW) == RetryAdvice(RETRY, None)
    assert classify_rejection(503, [(b"retry-after-ms", b"5")], NOW) == RetryAdvice(RETRY, None)


def test_hinted_status_with_a_garbage_header() -> None:
    assert classify_rejection(503, [(b"retry-after", b"soon")], NOW) == RetryAdvice(RETRY, None)
    assert classify_rejection(429, [(b"retry-after", b"-1")], NOW) == RetryAdvice(RETRY, None)


def test_the_first_retry_after_header_wins() -> None:
    headers = [(b"retry-after", b"4"), (b"Retry-After", b"9")]
    assert classify_rejection(503, headers, NOW) == RetryAdvice(RETRY, 4.0)


def test_headers_may_be_any_iterable() -> None:
    headers = iter([(b"retry-after", b"2")])
    assert classify_rejection(429, headers, NOW) == RetryAdvice(RETRY, 2.0)


@pytest.mark.parametrize("status", [500, 501, 502, 504, 505, 599])
def test_other_5xx_retry_without_a_hint(status: int) -> None:
    headers = [(b"retry-after", b"3")]
    assert classify_rejection(status, headers, NOW) == RetryAdvice(RETRY, None)
    assert classify_rejection(status, [], NOW) == RetryAdvice(RETRY, None)


@pytest.mark.parametrize(
    "status", [100, 101, 200, 204, 301, 302, 307, 308, 400, 401, 403, 404, 426, 428, 431, 499, 600]
)
def test_other_statuses_are_fatal(status: int) -> None:
    headers = [(b"retry-after", b"3")]
    assert classify_rejection(status, headers, NOW) == RetryAdvice(FATAL, None)


# --------------------------------------------------------------------------- format_close_reason


def test_format_close_reason_default() -> None:
    text = format_close_reason(1.375)
    assert text == '{"reason":"restarting","retryAfter":1375}'
    assert parse_retry_after_reason(text) == 1.375
    assert classify_close(1012, text) == RetryAdvice(RETRY, 1.375)


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(0, 0), (0.0, 0), (0.0004, 0), (0.001, 1), (0.25, 250), (1.75, 1750), (300, 300000)],
)
def test_format_sends_whole_milliseconds(seconds: float, ms: int) -> None:
    text = format_close_reason(seconds, "x")
    assert json.loads(text) == {"reason": "x", "retryAfter": ms}
    assert parse_retry_after_reason(text) == ms / 1000.0


def test_format_exactly_123_bytes_is_allowed_and_124_raises() -> None:
    base = len(format_close_reason(0, "").encode("utf-8"))
    assert base == 28
    ok = format_close_reason(0, "x" * (MAX_CLOSE_REASON_BYTES - base))
    assert len(ok.encode("utf-8")) == 123
    assert parse_retry_after_reason(ok) == 0.0
    with pytest.raises(ValueError, match="124 bytes, more than the 123"):
        format_close_reason(0, "x" * (MAX_CLOSE_REASON_BYTES - base + 1))


def test_format_counts_utf8_bytes_not_characters() -> None:
    # 95 bytes free: 47 two-byte characters + 1 ASCII = 95 bytes -> 123 total.
    ok = format_close_reason(0, "é" * 47 + "x")
    assert "é" in ok  # sent as UTF-8, not \u escapes
    assert len(ok.encode("utf-8")) == 123
    assert len(ok) == 123 - 47
    assert parse_retry_after_reason(ok) == 0.0
    # 48 two-byte characters: 76 characters, but 124 bytes.
    with pytest.raises(ValueError, match="124 bytes"):
        format_close_reason(0, "é" * 48)
    # A 4-byte emoji: 23 of them are 92 bytes (+28 = 120), 24 are 96 (124).
    assert len(format_close_reason(0, "\U0001f680" * 23).encode()) == 120
    with pytest.raises(ValueError, match="124 bytes"):
        format_close_reason(0, "\U0001f680" * 24)


def test_format_counts_json_escapes() -> None:
    # A quote is escaped as two bytes.
    base = 28
    free = MAX_CLOSE_REASON_BYTES - base
    assert len(format_close_reason(0, '"' * (free // 2)).encode()) == base + 2 * (free // 2)
    with pytest.raises(ValueError, match="more than the 123"):
        format_close_reason(0, '"' * (free // 2 + 1))


def test_format_long_hint_counts_against_the_limit() -> None:
    with pytest.raises(ValueError, match="123"):
        format_close_reason(1e300)


@pytest.mark.parametrize("seconds", [-0.001, -1.0, math.nan, math.inf, -math.inf])
def test_format_rejects_negative_and_non_finite(seconds: float) -> None:
    with pytest.raises(ValueError, match="retry_after must be finite and non-negative"):
        format_close_reason(seconds)


@pytest.mark.parametrize("seconds", [1e306, 1.7976931348623157e308])
def test_format_huge_finite_hint_raises_value_error(seconds: float) -> None:
    with pytest.raises(ValueError, match="123"):
        format_close_reason(seconds)
