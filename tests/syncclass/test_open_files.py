"""The open-file limit: raised to the hard limit at start and said in the log; running out of
it is logged (at most once a second) and the server recovers."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from tests.server import start_server

pytestmark = pytest.mark.timeout(60)

HARD = 300


def test_the_limit_is_raised_and_running_out_is_logged(tmp_path: Path) -> None:
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (100, {HARD}))"
    server = start_server(tmp_path, prelude=prelude)
    try:
        assert f"open files: up to {HARD}" in server.log()
        assert server.status()["fds"] < HARD // 2
        held = []
        try:
            for _ in range(HARD + 20):  # idle connections: the server runs out of files
                held.append(
                    socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
                )
            started = time.monotonic()
            deadline = started + 10
            while "Too many open files" not in server.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
            seconds = time.monotonic() - started
        finally:
            for connection in held:
                connection.close()
        warnings = re.findall(r"\d+ of \d+ open files in use", server.log())
        assert warnings, server.log()[-2000:]
        assert len(warnings) <= seconds + 12  # at most once a second
        deadline = time.monotonic() + 10
        while True:  # the held connections are let go: the server serves again
            try:
                assert server.status()["fds"] < HARD // 2
                break
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        server.stop()
