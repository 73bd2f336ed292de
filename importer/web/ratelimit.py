"""Rate limits (the `limits` library): sign-in and activation attempts per account and per client address."""

from __future__ import annotations

import math
import time

from limits import parse, storage, strategies

from importer.web.answers import WebError


class RateLimits:
    """Moving-window limits in one storage (memory by default; Redis when several processes share it)."""

    def __init__(self, storage_uri: str) -> None:
        self._uri = storage_uri
        self._made: strategies.MovingWindowRateLimiter | None = None

    @property
    def _limiter(self) -> strategies.MovingWindowRateLimiter:
        # Made at the first attempt: the memory storage starts a timer thread, which an app that
        # never signs anyone in (a test of the API) need not have.
        if self._made is None:
            self._made = strategies.MovingWindowRateLimiter(storage.storage_from_string(self._uri))
        return self._made

    def hit(self, rule: str, scope: str, key: str) -> None:
        """Count one attempt; a WebError 429 with Retry-After when the rule is already used up."""
        limit = parse(rule)
        if self._limiter.hit(limit, scope, key):
            return
        reset, _ = self._limiter.get_window_stats(limit, scope, key)
        retry = max(1, math.ceil(reset - time.time()))
        raise WebError(
            429,
            "too_many_attempts",
            f"Too many attempts; try again in {retry} seconds.",
            headers={"Retry-After": str(retry)},
        )
