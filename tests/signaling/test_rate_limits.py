"""Token buckets per client address: bursts, refill, and what counts as one client."""

from __future__ import annotations

from unittest.mock import Mock

from aiohttp.test_utils import make_mocked_request

from signaling.rate_limits import Buckets, Rate, client_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_a_steady_rate() -> None:
    clock = Clock()
    buckets = Buckets(Rate(3, 60), clock)  # 3 at once, then one per 20 s
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == 20.0  # the next token comes in 20 s
    assert buckets.take("b") == 0  # another client has its own bucket
    clock.now += 19
    assert 0 < buckets.take("a") <= 1
    clock.now += 1
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0
    clock.now += 3600  # a long pause refills the bucket, never beyond the burst
    assert [buckets.take("a") for _ in range(4)][:3] == [0, 0, 0]
    assert buckets.take("a") > 0


def test_idle_clients_are_forgotten() -> None:
    """Waves of new clients (addresses are cheap to an attacker) do not grow memory without
    bound: a client idle long enough to have its bucket full again is forgotten."""
    clock = Clock()
    buckets = Buckets(Rate(1, 10), clock)
    for wave in range(6):
        for i in range(12_000):
            buckets.take(f"10.{wave}.{i // 256}.{i % 256}")
        clock.now += 11
    assert len(buckets._buckets) <= 2 * 12_000


def request_from(address: str) -> object:
    transport = Mock()
    transport.get_extra_info.return_value = (address, 1234)
    return make_mocked_request("POST", "/api/lessons", transport=transport)


def test_what_counts_as_one_client() -> None:
    assert client_of(request_from("192.0.2.7")) == "192.0.2.7"  # type: ignore[arg-type]
    # an IPv6 host has a whole /64 to pick addresses from
    first = client_of(request_from("2001:db8:1:2::5"))  # type: ignore[arg-type]
    assert first == client_of(request_from("2001:db8:1:2:ffff::9"))  # type: ignore[arg-type]
    assert first != client_of(request_from("2001:db8:1:3::5"))  # type: ignore[arg-type]
    assert client_of(request_from("::ffff:192.0.2.7")) == "192.0.2.7"  # type: ignore[arg-type]
