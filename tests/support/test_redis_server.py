"""The tests' Redis: it answers on 127.0.0.1 only, keeps nothing on disk, and comes back empty
on the same port after a stop."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.support.redis_server import running_redis


def test_redis_runs_on_loopback_without_persistence(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
            assert client.config_get("bind")["bind"] == "127.0.0.1"
            assert client.config_get("save")["save"] == ""
            assert client.config_get("appendonly")["appendonly"] == "no"
            client.set("k", "v")
            server.stop()
            server.start()
            assert client.get("k") is None  # nothing was kept
        finally:
            client.close()
    assert not list((tmp_path / "redis").glob("*.rdb"))
