"""A worker process holding sink classrooms, driven over a pipe by the benchmark.

Commands: ("join", count, decode_count, concurrency) → join durations; ("leave", vanish) → the
oldest sink leaves, saying goodbye (DELETE) or, with ``vanish``, vanishing without a word;
("reset",) → zero the counters; ("stats",) → per-sink summaries; ("close",) → leave and exit.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urljoin

import aiohttp

from .peers import Sink, loopback_only

_names = itertools.count()


def run(conn: Connection, whep_url: str, token: str, prefix: str, background: bool) -> None:
    if background:
        # Load classrooms stand for schools elsewhere, not for work of this machine: they run
        # only on CPU time that the server, the origin and the measured probes leave idle.
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    loopback_only()
    asyncio.run(_serve(conn, whep_url, token, prefix))


async def _serve(conn: Connection, whep_url: str, token: str, prefix: str) -> None:
    loop = asyncio.get_running_loop()
    sinks: list[Sink] = []

    async def join_one(decode: bool, semaphore: asyncio.Semaphore) -> None:
        async with semaphore:
            sink = Sink(f"{prefix}-{next(_names)}", decode=decode)
            sinks.append(sink)
            await sink.join(whep_url, token)

    while True:
        command: tuple[Any, ...] = await loop.run_in_executor(None, conn.recv)
        name = command[0]
        if name == "join":
            _, count, decode_count, concurrency = command
            semaphore = asyncio.Semaphore(concurrency)
            await asyncio.gather(*(join_one(i < decode_count, semaphore) for i in range(count)))
            conn.send("ok")
        elif name == "leave":
            if not sinks:
                conn.send("none")
                continue
            sink = sinks.pop(0)
            if command[1]:
                sink.go_silent()
            else:
                await _delete(urljoin(whep_url, sink.location), token)
            await sink.close()
            conn.send("ok")
        elif name == "reset":
            for sink in sinks:
                sink.reset()
            conn.send("ok")
        elif name == "stats":
            conn.send([sink.summary() for sink in sinks])
        elif name == "close":
            await asyncio.gather(*(sink.close() for sink in sinks), return_exceptions=True)
            conn.send("ok")
            return


async def _delete(url: str, token: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.delete(url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        await response.read()
