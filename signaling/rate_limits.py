"""Rate limits per client: a token bucket per client address for lesson creation, for WHIP/WHEP
offers and for event messages.

A whole school reaches the server from one NAT address, so the limits are per address and
generous (30 classrooms joining within seconds pass); they stop one client from making the
server negotiate, store or relay without end. Over the limit an HTTP request gets ``429`` with
``Retry-After``, an event message gets ``{"type": "error", "error": "rate_limited"}``, and a
socket that keeps sending regardless is closed.

Requests whose credential does not authenticate (none, junk, expired) draw from buckets of
their own: a device that sends junk from a school's address must not use up the requests of
the classrooms and the teacher behind the same address.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .auth import account_for, credential_of
from .contracts import TokenError
from .errors import http_error
from .keys import AUTHORITY

# Refusals in a row after which an event socket is closed: a client that reads its errors
# slows down long before.
MAX_REFUSED_MESSAGES = 20
# Close code for that, 4000 + the HTTP status it stands for (as the other event close codes).
CLOSE_RATE_LIMITED = 4429
_PRUNE_ABOVE = 10_000  # clients remembered before idle ones are forgotten


@dataclass(frozen=True)
class Rate:
    """At most ``count`` in any ``seconds`` on average, in bursts of up to ``count``."""

    count: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.count} per {self.seconds:g} s"


class Buckets:
    """One token bucket per client for one kind of request."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._refill = rate.count / rate.seconds  # tokens per second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self._prune_above = _PRUNE_ABOVE

    def take(self, client: str) -> float:
        """Take a token: 0 if there was one, else the seconds until there will be."""
        now = self._clock()
        capacity = self.rate.count
        tokens, then = self._buckets.get(client, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * self._refill)
        if tokens >= 1:
            self._buckets[client] = (tokens - 1, now)
            if len(self._buckets) > self._prune_above:
                self._prune(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1 - tokens) / self._refill

    def _prune(self, now: float) -> None:
        # a bucket left alone for a whole period is full again: the same as none
        period = self.rate.seconds
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < period}
        self._prune_above = max(_PRUNE_ABOVE, 2 * len(self._buckets))


def client_of(request: web.Request) -> str:
    """The address a limit counts against: the IPv4 address, or the /64 of an IPv6 one
    (one household or school gets a whole /64)."""
    remote = request.remote or ""
    try:
        address = ipaddress.ip_address(remote)
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.ip_network(f"{address.exploded}/64", strict=False))
    except ValueError:
        return remote
    return str(address)


class MessageGate:
    """The message limit as one event socket sees it."""

    def __init__(self, buckets: Buckets | None, client: str) -> None:
        self._buckets = buckets
        self._client = client
        self._refused = 0

    def refusal(self) -> dict[str, Any] | None:
        """None if the next message may be handled, else the error to answer it with."""
        if self._buckets is None or self._buckets.take(self._client) == 0:
            self._refused = 0
            return None
        self._refused += 1
        return {
            "type": "error",
            "error": "rate_limited",
            "message": f"too many messages (at most {self._buckets.rate}); slow down",
        }

    @property
    def exhausted(self) -> bool:
        """The client went on sending after many refusals: close its socket."""
        return self._refused >= MAX_REFUSED_MESSAGES


class RateLimits:
    """The limits of one server; ``None`` for a kind means unlimited."""

    def __init__(self, lessons: Rate | None, media: Rate | None, messages: Rate | None) -> None:
        rates = (("lessons", lessons), ("media", media), ("messages", messages))
        self._buckets = {kind: Buckets(rate) for kind, rate in rates if rate is not None}
        # for requests whose credential does not authenticate: kept apart, so that they
        # never use up what the valid holders behind the same address may do
        self._anonymous = {kind: Buckets(rate) for kind, rate in rates if rate is not None}

    def check(self, kind: str, request: web.Request, authenticated: bool = True) -> None:
        """Raise 429 if the client has used up its ``kind`` requests for now (those with a
        credential that authenticates, or those without, as ``authenticated`` says)."""
        buckets = (self._buckets if authenticated else self._anonymous).get(kind)
        if buckets is None:
            return
        wait = buckets.take(client_of(request))
        if wait > 0:
            raise http_error(
                429,
                "rate_limited",
                f"too many requests from this address (at most {buckets.rate}); try again later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def gate(self, request: web.Request) -> MessageGate:
        return MessageGate(self._buckets.get("messages"), client_of(request))


RATE_LIMITS = web.AppKey("rate_limits", RateLimits)
_UNLIMITED = RateLimits(None, None, None)

# the requests that count, by method and route
_LIMITED = {
    ("POST", "/api/lessons"): "lessons",
    ("POST", "/whip/{lesson_id}"): "media",
    ("POST", "/whep/{lesson_id}"): "media",
    ("POST", "/api/check"): "media",
    ("GET", "/api/check"): "media",
}


def authenticates(request: web.Request) -> bool:
    """Whether the request carries a credential that is a well-signed, unexpired lesson token
    or an account key (for any lesson: the handler checks which; this only picks the bucket)."""
    credential = credential_of(request)
    if credential is None:
        return False
    authority = request.app.get(AUTHORITY)
    if authority is not None:
        try:
            authority.verify(credential)
            return True
        except TokenError:
            pass
    return account_for(request, credential) is not None


def limits_of(app: web.Application) -> RateLimits:
    return app.get(RATE_LIMITS, _UNLIMITED)


def message_gate(request: web.Request) -> MessageGate:
    """The message limit for an event socket opened by ``request``."""
    return limits_of(request.app).gate(request)


@web.middleware
async def rate_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    resource = request.match_info.route.resource
    if resource is not None:
        kind = _LIMITED.get((request.method, resource.canonical))
        if kind is not None:
            limits_of(request.app).check(kind, request, authenticates(request))
    return await handler(request)


def setup_rate_limits(app: web.Application, limits: RateLimits) -> None:
    app[RATE_LIMITS] = limits
    app.middlewares.append(rate_limit)
