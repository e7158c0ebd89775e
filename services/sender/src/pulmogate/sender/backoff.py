"""Retry delays for deliveries: exponential, doubling from the initial delay, capped."""


def backoff_delay(failed_attempts: int, initial_s: float, max_s: float) -> float:
    """Seconds to wait after the ``failed_attempts``-th failure (1 → initial, 2 → 2×, …)."""
    if failed_attempts < 1:
        return 0.0
    exponent = min(failed_attempts - 1, 60)
    return float(min(initial_s * (2**exponent), max_s))
