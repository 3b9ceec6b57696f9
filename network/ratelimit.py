"""Token buckets: the per-peer flood limits on messages and bytes, and on addresses."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Allows ``rate`` units per second on average and bursts of ``burst`` units.

    The bucket starts full unless ``initial`` says otherwise.  ``consume(n)`` takes
    ``n`` tokens if the bucket holds them and reports whether it did; tokens refill
    continuously, and ``credit(n)`` adds ``n`` at once (never beyond the burst).
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        initial: float | None = None,
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("token bucket rate and burst must be positive")
        self.rate = rate  # tokens added per second
        self.burst = burst  # most tokens the bucket holds
        self._clock = clock  # monotonic seconds
        self._tokens = float(burst if initial is None else min(initial, burst))  # available now
        self._updated = clock()  # when _tokens was last brought up to date

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens

    def consume(self, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens; False (and take nothing) if there are too few."""
        self._refill()
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True

    def credit(self, amount: float) -> None:
        """Add ``amount`` tokens now, up to the burst."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + amount)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
