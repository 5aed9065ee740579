"""Option checks shared by the client and the server: one place for each rule.

Numbers of seconds and rates must be finite and positive (``bool`` is not a
number here, though Python says it is an ``int``); counts must be whole.
Some settings may be zero (a window, a base delay) and one must be at least 1
(a burst of handshakes); :func:`check_number` states those bounds once.
Each check has an attrs-validator form, for ``attrs.field(validator=...)``.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = [
    "check_number",
    "check_positive",
    "non_negative_int",
    "non_negative_number",
    "optional_number_at_least_one",
    "optional_positive_number",
    "positive_int",
    "positive_number",
]


def check_positive(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number above zero."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def check_number(name: str, value: object, minimum: float, *, strict: bool) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number above (``strict``)
    or at least ``minimum``."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
    )
    if not ok:
        bound = f"greater than {minimum}" if strict else f"at least {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "positive" if minimum > 0 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")


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
    """attrs validator: a finite number, zero or more."""
    check_number(attribute.name, value, 0.0, strict=False)


def optional_number_at_least_one(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    """attrs validator: ``None``, or a finite number of at least 1."""
    if value is not None:
        check_number(attribute.name, value, 1.0, strict=False)


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a whole number, at least 1."""
    _check_int(attribute.name, value, 1)


def non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a whole number, at least 0."""
    _check_int(attribute.name, value, 0)


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a whole number (no bool), at least ``minimum``."""
    _check_int(name, value, minimum)
