"""A syncclass server run as its own process, the way an operator runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEACHER_KEY = "test-teacher-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT_MODES = ("shared port", "port per peer")


def port_mode_options(mode: str) -> tuple[str, ...]:
    """Options that give peers UDP ports as ``mode`` (one of PORT_MODES) says: every peer on
    one shared port, the default, or each on a port of its own from a range."""
    if mode == "shared port":
        return ()
    low = free_port()
    return ("--ice-ports", f"{low}-{min(low + 40, 65535)}")


def serve_arguments(port: int, data_dir: Path) -> list[str]:
    """``serve`` with nothing but its port, data directory and loopback."""
    return ["serve", "--port", str(port), "--data-dir", str(data_dir), "--ice-bind", "127.0.0.1"]


def serve_command(port: int, data_dir: Path) -> list[str]:
    """``syncclass serve`` with nothing but its port, data directory and loopback."""
    return [sys.executable, "-m", "syncclass", *serve_arguments(port, data_dir)]


def launch(
    command: list[str], port: int, lines: int = 2, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], list[str], float]:
    """Start a server as an operator does; return it, the first ``lines`` it prints, and the
    seconds until it serves."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert process.stdout is not None
    printed = [process.stdout.readline().decode() for _ in range(lines)]
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, printed, time.monotonic() - started
        except OSError:
            assert time.monotonic() - started < 10, "the server never listened"
            time.sleep(0.02)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    teacher_key: str = TEACHER_KEY
    _log: Any = field(default=None, repr=False)
    _admin_key: str | None = field(default=None, repr=False)

    @property
    def admin_key(self) -> str:
        """The admin key: the one given with ``--admin-key``, else the one the server made in
        its data directory on first start."""
        if self._admin_key is None:
            self._admin_key = (self.data_dir / "admin.key").read_text().strip()
        return self._admin_key

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode(errors="replace")

    def create_lesson(self, title: str = "Maths", **fields: Any) -> dict[str, Any]:
        status, lesson = self.request(
            "POST", "/api/lessons", token=self.teacher_key, body={"title": title, **fields}
        )
        assert status == 201, lesson
        return dict(lesson)

    def status(self) -> dict[str, Any]:
        status, body = self.request("GET", "/api/status", token=self.admin_key)
        assert status == 200, body
        return dict(body)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        return self.process.returncode


def start_server(
    data_dir: Path,
    *args: str,
    prelude: str = "",
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Server:
    """Start ``python -m syncclass serve`` on loopback; ``prelude`` runs first in the process."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed by Server.stop
    code = f"{prelude}\nfrom syncclass.cli import main\nmain()"
    command = [
        sys.executable,
        "-c",
        code,
        *serve_arguments(port, data_dir),
        "--teacher-key",
        TEACHER_KEY,
        *args,
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    given = args[args.index("--admin-key") + 1] if "--admin-key" in args else None
    server = Server(
        f"http://127.0.0.1:{port}", process, data_dir, log_path, _log=log, _admin_key=given
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not start:\n{server.log()}")
