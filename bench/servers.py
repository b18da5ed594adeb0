"""Start the servers a benchmark compares, as separate processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEACHER_KEY = "bench-teacher-key-0123456789"
ADMIN_KEY = "bench-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lesson:
    whip_url: str
    whip_token: str
    whep_url: str
    whep_token: str


@dataclass
class Running:
    kind: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float = 30,
        key: str = TEACHER_KEY,
    ) -> Any:
        """A JSON request to the server's API with ``key`` (the teacher's unless told); its
        JSON answer."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def lesson(self, title: str) -> Lesson:
        if self.kind == "relay":
            name = title.replace(" ", "-")
            return Lesson(f"{self.url}/whip/{name}", "-", f"{self.url}/whep/{name}", "-")
        body = self.api(
            "POST", "/api/lessons", {"title": title, "max_classrooms": 1000, "record": False}
        )
        return Lesson(body["whip_url"], body["whip_token"], body["whep_url"], body["whep_token"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(kind: str, data_dir: Path, *options: str) -> Running:
    """Start a server of ``kind``; ``options`` go on the syncclass command line."""
    port = free_port()
    if kind == "syncclass":
        command = [
            sys.executable,
            "-m",
            "syncclass",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--ice-bind",
            "127.0.0.1",
            "--teacher-key",
            TEACHER_KEY,
            "--admin-key",
            ADMIN_KEY,
            "--log-level",
            "warning",
            # every classroom of a benchmark joins from 127.0.0.1, faster than any school
            "--rate-limit-media",
            "off",
            "--rate-limit-lessons",
            "off",
            "--rate-limit-messages",
            "off",
            *options,
        ]
    elif kind == "relay":
        command = [sys.executable, "-m", "bench.relay_server", "--port", str(port)]
    else:
        raise ValueError(kind)
    log = open(data_dir / f"{kind}.log", "ab")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited: {(data_dir / f'{kind}.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return Running(kind, process, f"http://127.0.0.1:{port}", data_dir / f"{kind}.log")
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{kind} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line[:5]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)
