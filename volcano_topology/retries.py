"""The one retry layer: which failures are worth retrying, and how long to wait.

Retriable: 429 (``Retry-After`` is a floor), 5xx, transport failures (status 0:
reset, refused, timeout) and 409 on a stale read (the caller re-reads first).
Everything else (400, 403, 404, 422, 409 AlreadyExists) is permanent and reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from volcano_topology.kube import KubeError


class StaleRead(Exception):
    """What we planned against has changed on the server; re-read and plan the write again."""


def is_retriable(exc: BaseException) -> bool:
    if isinstance(exc, StaleRead):
        return True
    if not isinstance(exc, KubeError):
        return False
    return exc.status == 0 or exc.status == 429 or exc.status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 0.2
    maximum: float = 10.0
    jitter: float = 0.2
    attempts: int = 10
    deadline: float = 60.0

    def wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential_jitter(multiplier=self.initial, max=self.maximum, jitter=self.jitter)(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        floor = exc.retry_after if isinstance(exc, KubeError) and exc.retry_after else 0.0
        return max(float(backoff), floor)

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(is_retriable),
            wait=self.wait,
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.deadline),
            reraise=True,
        )
