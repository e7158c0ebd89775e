"""Retry delays double from the initial delay and stop at the cap."""

from pulmogate.sender.backoff import backoff_delay


def test_delay_doubles_from_the_initial_value() -> None:
    assert [backoff_delay(n, 10, 900) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]


def test_delay_is_capped() -> None:
    assert backoff_delay(7, 10, 900) == 640
    assert backoff_delay(8, 10, 900) == 900
    assert backoff_delay(1000, 10, 900) == 900


def test_no_failure_means_no_delay() -> None:
    assert backoff_delay(0, 10, 900) == 0
