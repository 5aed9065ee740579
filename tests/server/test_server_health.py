"""The log's health and the admission verdict (server/_health.py): pure, given now."""

from __future__ import annotations

import math

from trio_reconnect.server import AdmissionControl
from trio_reconnect.server._health import Admission, HealthVerdict, LogHealth


def test_a_log_goes_down_stays_down_and_closes_the_clients_once_per_outage() -> None:
    health = LogHealth()
    assert not health.down
    assert health.failed(10.0, 30.0) is HealthVerdict.WENT_DOWN
    assert (health.down, health.down_since) == (True, 10.0)
    assert health.failed(39.9, 30.0) is HealthVerdict.STILL_DOWN
    assert health.failed(40.0, 30.0) is HealthVerdict.OUTAGE  # exactly the limit
    assert health.failed(41.0, 30.0) is HealthVerdict.STILL_DOWN  # once per outage
    assert health.succeeded(45.0) == 35.0
    assert not health.down
    # A new outage counts from its own first failure, and closes again.
    assert health.failed(50.0, 30.0) is HealthVerdict.WENT_DOWN
    assert health.failed(79.0, 30.0) is HealthVerdict.STILL_DOWN
    assert health.failed(80.0, 30.0) is HealthVerdict.OUTAGE


def test_without_a_limit_an_outage_never_closes_the_clients() -> None:
    health = LogHealth()
    assert health.failed(0.0, None) is HealthVerdict.WENT_DOWN
    assert health.failed(1e9, None) is HealthVerdict.STILL_DOWN


def test_a_success_while_up_says_nothing() -> None:
    health = LogHealth()
    assert health.succeeded(5.0) is None
    assert health.down_since is None


def _admission(rate: float | None = None) -> Admission:
    return Admission(AdmissionControl(rate, refusal_rate=100.0), 5.0)


def test_everything_is_admitted_without_a_limit_while_the_log_is_up() -> None:
    admission = _admission()
    assert [admission.decide(float(t), log_down=False) for t in range(5)] == [None] * 5


def test_the_log_down_refuses_with_at_least_the_outage_retry_after() -> None:
    admission = _admission()
    answers = [admission.decide(0.0, log_down=True) for _ in range(3)]
    assert answers[0] == 5
    assert all(a is not None and a >= 5 for a in answers)


def test_a_refusal_window_points_past_its_end_and_outranks_the_log() -> None:
    admission = _admission()
    admission.refuse_for(10.0, 8.0)
    admission.refuse_for(10.0, 2.0)  # a shorter refusal does not shorten it
    assert admission.refuse_until == 18.0
    assert admission.decide(10.0, log_down=True) == 8
    assert admission.decide(18.0, log_down=False) is None  # over at its end


def test_a_stopping_node_refuses_for_good() -> None:
    admission = _admission()
    assert admission.refuse_until == -math.inf
    admission.stop(100.0, 10.0)
    assert admission.stopping
    assert admission.decide(100.0, log_down=False) == 10
    assert admission.decide(1000.0, log_down=False) == 1  # past the window: still refused


def test_the_rate_limit_applies_only_when_nothing_else_refuses() -> None:
    admission = _admission(rate=1.0)
    assert admission.decide(0.0, log_down=False) is None
    assert admission.decide(0.0, log_down=False) == 1  # over the rate: spread
