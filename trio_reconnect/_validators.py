"""Option checks shared by the client and the server: one place for each rule.

Numbers of seconds and rates must be finite and positive (``bool`` is not a
number here, though Python says it is an ``int``); counts must be whole; a
TCP port is a whole number up to :data:`MAX_PORT`; a few settings may be
zero (a window, a base delay) and one must be at least 1 (a burst of
handshakes).
Each rule is stated once, as a ``*_problem`` function that returns what is
wrong (``None``: nothing); the ``check_*`` functions raise it as a
``ValueError`` naming the option, the attrs validators do the same for
``attrs.field(validator=...)``, and the command line's argument types
(:mod:`trio_reconnect._tools._policy`) use the same functions.
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

__all__ = [
    "MAX_PORT",
    "at_least_one_problem",
    "check_int",
    "check_non_negative",
    "check_port",
    "check_positive",
    "int_problem",
    "non_negative_int",
    "non_negative_number",
    "non_negative_problem",
    "optional_number_at_least_one",
    "optional_positive_int",
    "optional_positive_number",
    "port_problem",
    "positive_int",
    "positive_number",
    "positive_problem",
]

#: The highest TCP port.
MAX_PORT: Final = 65535


def positive_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a finite number above zero (``None``: nothing)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        return f"must be a positive finite number, got {value!r}"
    return None


def non_negative_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a finite number of at least zero."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        return f"must be a non-negative finite number, got {value!r}"
    return None


def at_least_one_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a finite number of at least 1."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 1
    ):
        return f"must be a finite number of at least 1, got {value!r}"
    return None


def int_problem(value: object, minimum: int) -> str | None:
    """What is wrong with ``value`` as a whole number of at least ``minimum`` (0 or 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        return f"must be a {kind} integer, got {value!r}"
    return None


def port_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a TCP port to listen on (0: any free port)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PORT:
        return f"must be a port from 0 to {MAX_PORT}, got {value!r}"
    return None


def _raise(name: str, problem: str | None) -> None:
    if problem is not None:
        raise ValueError(f"{name} {problem}")


def check_positive(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number above zero."""
    _raise(name, positive_problem(value))


def check_non_negative(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number of at least zero."""
    _raise(name, non_negative_problem(value))


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a whole number (no bool), at least ``minimum``."""
    _raise(name, int_problem(value, minimum))


def check_port(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a TCP port from 0 to :data:`MAX_PORT`."""
    _raise(name, port_problem(value))


def positive_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a finite number above zero."""
    check_positive(attribute.name, value)


def optional_positive_number(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    """attrs validator: ``None``, or a finite number above zero."""
    if value is not None:
        check_positive(attribute.name, value)


def non_negative_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a finite number, at least zero."""
    _raise(attribute.name, non_negative_problem(value))


def optional_number_at_least_one(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    """attrs validator: ``None``, or a finite number of at least 1."""
    if value is not None:
        _raise(attribute.name, at_least_one_problem(value))


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a whole number, at least 1."""
    check_int(attribute.name, value, minimum=1)


def non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a whole number, at least 0."""
    check_int(attribute.name, value, minimum=0)


def optional_positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: ``None``, or a whole number of at least 1."""
    if value is not None:
        check_int(attribute.name, value, minimum=1)
