"""The child processes that run recorder.finalize: one following each live recording, and
one-off runs for recordings to recover. Their messages go to a log file in the recording's
directory (a pipe nobody reads during a 45-minute lesson would fill up and stall them)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

COMMAND = (sys.executable, "-m", "recorder.finalize")
LOG = "finalize.log"


NO_MEDIA_EXIT = 2  # recorder.finalize's exit status for logs without any media


class RemuxFailed(Exception):
    """The finaliser exited without a result; the message says how."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.no_media = returncode == NO_MEDIA_EXIT


def _result(stdout: bytes) -> dict[str, Any] | None:
    lines = stdout.decode(errors="replace").strip().splitlines()
    if not lines:
        return None
    try:
        result = json.loads(lines[-1])
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


def _explain(directory: Path, returncode: int | None) -> str:
    try:
        text = (directory / LOG).read_text(errors="replace").strip()
    except OSError:
        text = ""
    last = text.splitlines()[-1] if text else ""
    return f"finaliser exited with {returncode}: {last[:300]}"


async def _spawn(directory: Path, *args: str) -> asyncio.subprocess.Process:
    log = await asyncio.to_thread(open, directory / LOG, "ab")
    try:
        return await asyncio.create_subprocess_exec(
            *COMMAND,
            str(directory),
            *args,
            stdin=asyncio.subprocess.PIPE if args else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    finally:
        log.close()


async def _wait(process: asyncio.subprocess.Process, directory: Path) -> dict[str, Any]:
    """The result of ``process``; cancelling (e.g. by a timeout around it) kills it."""
    try:
        stdout, _ = await process.communicate()
    except asyncio.CancelledError:
        process.kill()
        await process.wait()
        raise
    result = _result(stdout)
    if process.returncode != 0 or result is None:
        raise RemuxFailed(_explain(directory, process.returncode), process.returncode)
    return result


async def remux_once(directory: Path) -> dict[str, Any]:
    """Remux a whole recording in a child process; raise RemuxFailed if it cannot be done."""
    return await _wait(await _spawn(directory), directory)


class Follower:
    """A finaliser that writes a lesson's files while it is recorded."""

    def __init__(self, process: asyncio.subprocess.Process, directory: Path) -> None:
        self._process = process
        self.directory = directory

    @classmethod
    async def start(cls, directory: Path) -> Follower:
        return cls(await _spawn(directory, "--follow"), directory)

    async def finish(self) -> dict[str, Any]:
        """Tell it the logs are complete and wait for the result."""
        process = self._process
        if process.returncode is None and process.stdin is not None:
            try:
                process.stdin.write(b"finish\n")
                await process.stdin.drain()
                process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
        return await _wait(process, self.directory)

    async def abandon(self) -> None:
        """Stop it without a result: its partial files go, the logs stay for later."""
        process = self._process
        if process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.communicate(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
