"""Hardening benchmark: the measured figures of issue 17, each attack beside a live lesson.

    scripts/bench hardening [--sessions 300] [--sockets 5000] [--socket-seconds 5]
                            [--nack-seconds 10] [--classrooms 2] [--rounds 3]

One server with its defaults (bar the per-address rate limits of bench/servers.py, which every
benchmark turns off because all its peers share 127.0.0.1), one lesson of 30 places. In a
process of its own, a live lesson: an origin that plays the fan-out clip (640x480 30 fps VP8
~1 Mbit/s + Opus) and ``--classrooms`` aiortc classrooms that decode it. For every attack the
share of the origin's frames each of them decoded during it is reported, and once during each
attack a new classroom joins and its time to the first decoded frame is taken.

1. **Half-open sessions.** ``--sessions`` WHEP offers with the join link, each its own name,
   sent at once (64 in flight): a quarter without candidates, a quarter without candidates but
   with ``a=end-of-candidates``, a quarter whose only candidate is a 127.0.0.1 port that takes
   every datagram and answers none, a quarter whose candidate is a 127.0.0.1 port nobody holds.
   Four times a second: the lesson's classroom count (the teacher's GET of the lesson), the
   server's sessions (/api/status), RSS and open fds (/proc). Reported: how long until every
   session is gone, from the first offer sent and from the last answered (target ≤ 30 s), the
   largest classroom count seen (target: the live classrooms and the joiner, never a ghost),
   RSS and fds before / peak / after (target: back to the baseline). ``--rounds`` repeats the
   attack: a round that ends where the one before ended is memory the allocator keeps, not a
   leak.
2. **Socket flood.** ``--sockets`` anonymous ``GET /api/lessons/{id}/events`` upgrades (no
   token) in ``--socket-seconds``, from another process, each holding its connection until
   the server closes it (up to 15 s, never answering). Meanwhile, on a connection of its own,
   the teacher's ``GET /api/lessons/{id}`` in a loop; its latency p50/p99 and failures during
   the flood against a window just before it (target p99 ≤ 100 ms), and a classroom that joins
   (WHEP, then its event socket with the join link) halfway.
3. **NACK flood.** One classroom (an aiortc peer of this process) sends ten NACKs a second for
   ``--nack-seconds``, each 64 entries naming the video packets it received in the last 200 ms
   over and over (each entry with its bitmask of the 16 following), through its own SRTP
   session, as an attacker with a join link can. Reported: the packets and payload bytes
   resent to it against the distinct packets named (target ≤ 2× their bytes), the server's
   CPU during the flood against windows of the same length without it just before and after
   (target ≤ 5 % of a core more), and the live classrooms' share of frames (target ≥ 98 %).

Results: bench/results/hardening.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import re
import resource
import socket
import statistics
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp

from . import report, servers
from .clip import opus_clip, video_clip
from .fanout import RESULTS
from .peers import Sink, loopback_only, new_pc, publish
from .soak import log_trouble

MAX_CLASSROOMS = 30
SAMPLE_S = 0.25
OFFERS_IN_FLIGHT = 64
GONE_WITHIN_S = 60.0  # the most the bench waits for the half-open sessions to go
SETTLE_S = 5.0
HOLD_S = 15.0  # an anonymous socket that was upgraded is held this long at most
PROBE_EVERY_S = 0.02
NACKS_PER_S = 10
NACK_ENTRIES = 64
NACK_WINDOW_S = 0.2
TARGETS = {
    "gone_s": 30.0,
    "api_p99_ms": 100.0,
    "resent_to_named": 2.0,
    "extra_cpu_pct": 5.0,
    "frames_kept_pct": 98.0,
    "frames_kept_beside_pct": 95.0,
    "rss_back_pct": 10.0,  # "back to baseline": within this much of it
}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the live lesson, in a process of its own -------------------------------------------------


def _lesson_main(conn: Connection, lesson: dict[str, Any], classrooms: int) -> None:
    loopback_only()
    asyncio.run(_lesson(conn, lesson, classrooms))


async def _first_frame(sink: Sink, within: float) -> float | None:
    """Seconds from the offer to the first decoded frame."""
    deadline = time.monotonic() + within
    while sink.stats.decoded == 0:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.01)
    return time.monotonic() - sink.joined_at


async def _delete(url: str, token: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.delete(url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        await response.read()


async def _join_once(lesson: dict[str, Any], name: str, events: bool) -> dict[str, Any]:
    """A classroom joins, decodes its first frame, opens its event socket with the join link
    (with ``events``) and leaves; what it met."""
    sink = Sink(name, decode=True)
    result: dict[str, Any] = {"name": name}
    try:
        try:
            await sink.join(lesson["whep_url"], lesson["whep_token"])
        except RuntimeError as exc:
            result["error"] = str(exc)[:200]
            return result
        first = await _first_frame(sink, 15.0)
        result["first_frame_s"] = None if first is None else round(first, 3)
        if events:
            url = lesson["events_url"] + f"?token={lesson['whep_token']}&name={name}"
            start = time.monotonic()
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws,
                ):
                    message = await ws.receive_json(timeout=10)
                    result["event_socket"] = message.get("type")
                    result["event_socket_s"] = round(time.monotonic() - start, 3)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                result["event_socket"] = f"failed: {exc!r}"[:200]
        await _delete(urljoin(lesson["whep_url"], sink.location), lesson["whep_token"])
    finally:
        await sink.close()
    return result


async def _lesson(conn: Connection, lesson: dict[str, Any], classrooms: int) -> None:
    loop = asyncio.get_running_loop()
    origin = await publish(lesson["whip_url"], lesson["whip_token"], video_clip("VP8"), opus_clip())
    sinks = [Sink(f"live-{i}", decode=True) for i in range(classrooms)]
    joins: list[asyncio.Task[dict[str, Any]]] = []
    try:
        for sink in sinks:
            await sink.join(lesson["whep_url"], lesson["whep_token"])
        firsts = [await _first_frame(sink, 20.0) for sink in sinks]
        conn.send(("ready", firsts))
        while True:
            command: tuple[Any, ...] = await loop.run_in_executor(None, conn.recv)
            if command[0] == "mark":
                conn.send(
                    {
                        "at": time.monotonic(),
                        "sent": origin.video.sent,
                        "decoded": [sink.stats.decoded for sink in sinks],
                        "connected": [sink.pc.connectionState for sink in sinks],
                    }
                )
            elif command[0] == "join":  # answered at once; the result comes with "joined"
                joins.append(asyncio.ensure_future(_join_once(lesson, command[1], command[2])))
                conn.send("ok")
            elif command[0] == "joined":
                conn.send([await join for join in joins])
                joins.clear()
            elif command[0] == "close":
                break
    finally:
        await asyncio.gather(*(sink.close() for sink in sinks), return_exceptions=True)
        await origin.close()
        conn.send("closed")


class LiveLesson:
    """The lesson beside the attacks, driven over a pipe."""

    def __init__(self, lesson: dict[str, Any], classrooms: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=_lesson_main, args=(child, lesson, classrooms))
        self.proc.start()

    async def ask(self, *command: Any) -> Any:
        self.conn.send(command)
        return await asyncio.to_thread(self.conn.recv)

    async def ready(self) -> list[float | None]:
        kind, firsts = await asyncio.to_thread(self.conn.recv)
        assert kind == "ready"
        return list(firsts)

    async def mark(self) -> dict[str, Any]:
        return dict(await self.ask("mark"))

    async def join(self, name: str, events: bool = False) -> None:
        await self.ask("join", name, events)

    async def joined(self) -> list[dict[str, Any]]:
        return list(await self.ask("joined"))

    async def close(self) -> None:
        await self.ask("close")
        await asyncio.to_thread(self.proc.join, 30)


def frames_kept(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Each live classroom's decoded frames over a window against the origin's frames."""
    sent = after["sent"] - before["sent"]
    kept = [
        (b - a) / sent * 100 if sent else 0.0
        for a, b in zip(before["decoded"], after["decoded"], strict=True)
    ]
    return {
        "window_s": round(after["at"] - before["at"], 2),
        "frames_sent": sent,
        "decoded": [b - a for a, b in zip(before["decoded"], after["decoded"], strict=True)],
        "kept_pct": [round(k, 2) for k in kept],
        "min_kept_pct": round(min(kept), 2) if kept else None,
        "connected_after": after["connected"],
    }


# --- talking to the server -------------------------------------------------------------------


class Api:
    """The server's API from this process's event loop."""

    def __init__(self, server: servers.Running, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def get(self, path: str, key: str = servers.TEACHER_KEY) -> Any:
        async with self.session.get(
            self.server.url + path,
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            response.raise_for_status()
            return await response.json()

    async def status(self) -> dict[str, Any]:
        return dict(await self.get("/api/status", key=servers.ADMIN_KEY))

    async def classrooms(self, lesson_id: str) -> int:
        return int((await self.get(f"/api/lessons/{lesson_id}"))["classrooms"])

    async def metrics(self) -> dict[str, float]:
        async with self.session.get(self.server.url + "/metrics") as response:
            text = await response.text()
        values = {}
        for line in text.splitlines():
            match = re.match(r"^(syncclass_\w+) ([0-9.eE+-]+)$", line)
            if match:
                values[match.group(1)] = float(match.group(2))
        return values


def resources(pid: int) -> dict[str, float]:
    rss, _ = servers.rss_mib(pid)
    return {"rss_mib": round(rss, 1), "fds": fds(pid)}


# --- 1. half-open sessions ---------------------------------------------------------------------


async def recvonly_offer() -> str:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


def with_candidates(sdp: str, candidates: list[str], end: bool) -> str:
    """``sdp`` with its candidates replaced by ``candidates`` (in each m-section)."""
    out = []
    for line in sdp.splitlines():
        if line.startswith(("a=candidate", "a=end-of-candidates")):
            continue
        out.append(line)
        if line.startswith("a=mid:"):
            out += candidates
            if end:
                out.append("a=end-of-candidates")
    return "\r\n".join(out) + "\r\n"


def half_open_offers(sdp: str, count: int, silent_port: int, closed_port: int) -> list[str]:
    def host(port: int) -> str:
        return f"a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"

    kinds = [
        with_candidates(sdp, [], False),
        with_candidates(sdp, [], True),
        with_candidates(sdp, [host(silent_port)], True),
        with_candidates(sdp, [host(closed_port)], True),
    ]
    return [kinds[i % len(kinds)] for i in range(count)]


HALF_OPEN_KINDS = [
    "without candidates",
    "without candidates, with a=end-of-candidates",
    "whose one candidate takes every datagram and answers none",
    "whose one candidate is a port nobody holds",
]


async def sample_while(
    api: Api, pid: int, lesson_id: str, samples: list[dict[str, Any]], started: float
) -> None:
    while True:
        status = await api.status()
        samples.append(
            {
                "t_s": round(time.monotonic() - started, 2),
                "classrooms": await api.classrooms(lesson_id),
                "sessions": status["sessions"],
                "peers": status["peers"],
                **resources(pid),
            }
        )
        await asyncio.sleep(SAMPLE_S)


async def idle_state(api: Api, pid: int, sessions: int) -> dict[str, Any]:
    """The server once only the live lesson is left (``sessions`` of them), settled."""
    deadline = time.monotonic() + GONE_WITHIN_S
    while time.monotonic() < deadline:
        if (await api.status())["sessions"] <= sessions:
            break
        await asyncio.sleep(SAMPLE_S)
    await asyncio.sleep(SETTLE_S)
    status = await api.status()
    return {**resources(pid), "sessions": status["sessions"], "tasks": status["tasks"]}


async def half_open_round(
    api: Api,
    server: servers.Running,
    lesson: dict[str, Any],
    live: LiveLesson,
    offers: list[str],
    round_no: int,
    baseline: dict[str, Any],
) -> dict[str, Any]:
    pid = server.pid
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    sampler = asyncio.ensure_future(sample_while(api, pid, lesson["id"], samples, started))
    frames_before = await live.mark()
    statuses: Counter[int] = Counter()
    semaphore = asyncio.Semaphore(OFFERS_IN_FLIGHT)
    answered_at: list[float] = []

    async def offer(http: aiohttp.ClientSession, n: int, sdp: str) -> None:
        async with (
            semaphore,
            http.post(
                f"{lesson['whep_url']}?name=Ghost-{round_no}-{n}",
                data=sdp,
                headers={
                    "Content-Type": "application/sdp",
                    "Authorization": f"Bearer {lesson['whep_token']}",
                },
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response,
        ):
            await response.read()
            statuses[response.status] += 1
            answered_at.append(time.monotonic())

    cpu0 = servers.cpu_seconds(pid)
    try:
        # the attacker's own connections, closed once every offer is answered
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(offer(http, n, sdp) for n, sdp in enumerate(offers)))
        last_answer = max(answered_at) - started
        cpu_per_offer_ms = (servers.cpu_seconds(pid) - cpu0) / len(offers) * 1000
        # every ghost is there now: a real classroom joins
        await live.join(f"real-{round_no}")
        gone_at = None
        while time.monotonic() - started < GONE_WITHIN_S + last_answer:
            if len(samples) > 1 and samples[-1]["t_s"] > last_answer:
                if samples[-1]["sessions"] <= baseline["sessions"]:
                    gone_at = samples[-1]["t_s"]
                    break
            await asyncio.sleep(SAMPLE_S)
        joined = await live.joined()
        frames_after = await live.mark()
    finally:
        sampler.cancel()
    after = await idle_state(api, pid, baseline["sessions"])
    return {
        "round": round_no,
        "offers": len(offers),
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "offers_answered_in_s": round(last_answer, 2),
        "server_cpu_ms_per_offer": round(cpu_per_offer_ms, 1),
        "gone_after_first_offer_s": gone_at,
        "gone_after_last_answer_s": None if gone_at is None else round(gone_at - last_answer, 2),
        "max_sessions": max(s["sessions"] for s in samples),
        "max_classrooms": max(s["classrooms"] for s in samples),
        "peak": {
            "rss_mib": max(s["rss_mib"] for s in samples),
            "fds": max(s["fds"] for s in samples),
        },
        "after": after,
        "joiner": joined[0] if joined else None,
        "frames": frames_kept(frames_before, frames_after),
        "samples": samples,
    }


async def half_open(
    api: Api,
    server: servers.Running,
    lesson: dict[str, Any],
    live: LiveLesson,
    count: int,
    rounds: int,
) -> dict[str, Any]:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes datagrams, answers none
    silent.bind(("127.0.0.1", 0))
    closed_port = servers.free_port()  # bound and let go: nobody holds it
    try:
        offers = half_open_offers(
            await recvonly_offer(), count, silent.getsockname()[1], closed_port
        )
        status = await api.status()
        baseline = {
            **resources(server.pid),
            "sessions": status["sessions"],
            "tasks": status["tasks"],
            "classrooms": await api.classrooms(lesson["id"]),
        }
        results = []
        for round_no in range(1, rounds + 1):
            print(f"half-open round {round_no}: {count} sessions", flush=True)
            results.append(
                await half_open_round(api, server, lesson, live, offers, round_no, baseline)
            )
            print(
                {k: v for k, v in results[-1].items() if k not in ("samples", "frames")},
                flush=True,
            )
    finally:
        silent.close()
    return {
        "sessions": count,
        "kinds": {kind: count // 4 + (i < count % 4) for i, kind in enumerate(HALF_OPEN_KINDS)},
        "baseline": baseline,
        "rounds": results,
    }


# --- 2. anonymous event-socket flood -----------------------------------------------------------


def _flood_main(
    conn: Connection, port: int, path: str, count: int, seconds: float, hold_s: float
) -> None:
    raise_fd_limit()
    conn.send("ready")
    conn.recv()
    conn.send(asyncio.run(_flood(port, path, count, seconds, hold_s)))


async def _drain(reader: asyncio.StreamReader) -> float | None:
    """Read until the server closes; when its first bytes (its close frame) came."""
    first = None
    while await reader.read(4096):
        if first is None:
            first = time.monotonic()
    return first


async def _flood(port: int, path: str, count: int, seconds: float, hold_s: float) -> dict[str, Any]:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    outcomes: Counter[str] = Counter()
    closed_after: list[float] = []
    launched: list[float] = []
    answer_ms: list[float] = []
    t0 = loop.time() + 0.2

    async def attempt(i: int) -> None:
        await asyncio.sleep(max(0.0, t0 + i * seconds / count - loop.time()))
        begun = loop.time()
        launched.append(begun - t0)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        except (OSError, TimeoutError) as exc:
            outcomes[f"connect failed ({type(exc).__name__})"] += 1
            return
        try:
            writer.write(request)
            line = await asyncio.wait_for(reader.readline(), 10)
            answer_ms.append((loop.time() - begun) * 1000)
            parts = line.split()
            code = parts[1].decode() if len(parts) > 1 else "no answer"
            if code != "101":
                outcomes[code] += 1
                return
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            upgraded = time.monotonic()
            try:
                first = await asyncio.wait_for(_drain(reader), hold_s)
                outcomes["101, then closed by the server"] += 1
                closed_after.append((first or time.monotonic()) - upgraded)
            except TimeoutError:
                outcomes[f"101, still open after {hold_s:g} s"] += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            outcomes[f"failed ({type(exc).__name__})"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(attempt(i) for i in range(count)))
    return {
        "attempts": count,
        "launched_within_s": round(max(launched), 2),
        "outcomes": dict(outcomes.most_common()),
        "answer_ms_p50": percentile(answer_ms, 0.5),
        "answer_ms_p99": percentile(answer_ms, 0.99),
        "upgraded_closed_after_s_max": round(max(closed_after), 2) if closed_after else None,
        "upgraded_closed_after_s_median": (
            round(statistics.median(closed_after), 2) if closed_after else None
        ),
    }


def latency_stats(latencies: list[float], failures: Counter[str]) -> dict[str, Any]:
    return {
        "requests": len(latencies) + sum(failures.values()),
        "failures": dict(failures),
        "p50_ms": round(p, 2) if (p := percentile(latencies, 0.5)) is not None else None,
        "p99_ms": round(p, 2) if (p := percentile(latencies, 0.99)) is not None else None,
        "max_ms": round(max(latencies), 2) if latencies else None,
    }


async def probe_latency(
    url: str, until: Callable[[], bool], window_s: float | None = None
) -> dict[str, Any]:
    """The teacher's GET of the lesson in a loop on a connection of its own; with
    ``window_s``, also the figures of the requests sent in its first ``window_s``."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    in_window: list[float] = []
    window_failures: Counter[str] = Counter()
    began = time.monotonic()
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        while not until():
            start = time.monotonic()
            windowed = window_s is not None and start - began < window_s
            try:
                async with session.get(
                    url,
                    headers={"Authorization": f"Bearer {servers.TEACHER_KEY}"},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as response:
                    await response.read()
                    if response.status != 200:
                        failures[str(response.status)] += 1
                        window_failures[str(response.status)] += windowed
                    else:
                        latencies.append((time.monotonic() - start) * 1000)
                        if windowed:
                            in_window.append(latencies[-1])
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[type(exc).__name__] += 1
                window_failures[type(exc).__name__] += windowed
            await asyncio.sleep(PROBE_EVERY_S)
    stats = latency_stats(latencies, failures)
    if window_s is not None:
        stats["window"] = latency_stats(in_window, +window_failures)
    return stats


async def timed(seconds: float, work: Callable[[Callable[[], bool]], Awaitable[Any]]) -> Any:
    end = time.monotonic() + seconds
    return await work(lambda: time.monotonic() >= end)


async def socket_flood(
    server: servers.Running,
    lesson: dict[str, Any],
    live: LiveLesson,
    count: int,
    seconds: float,
) -> dict[str, Any]:
    port = int(server.url.rsplit(":", 1)[1])
    path = f"/api/lessons/{lesson['id']}/events"
    probe_url = f"{server.url}/api/lessons/{lesson['id']}"
    context = multiprocessing.get_context("spawn")
    conn, child = context.Pipe()
    attacker = context.Process(target=_flood_main, args=(child, port, path, count, seconds, HOLD_S))
    attacker.start()
    await asyncio.to_thread(conn.recv)  # ready
    cpu0, t0 = servers.cpu_seconds(server.pid), time.monotonic()
    baseline = await timed(seconds, lambda stop: probe_latency(probe_url, stop))
    baseline_cores = (servers.cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
    print(f"socket flood: {count} attempts in {seconds:g} s", flush=True)
    before = resources(server.pid)
    frames_before = await live.mark()
    cpu0, t0 = servers.cpu_seconds(server.pid), time.monotonic()
    conn.send("go")
    done = asyncio.ensure_future(asyncio.to_thread(conn.recv))
    peak = dict(before)

    async def watch_resources() -> None:
        while not done.done():
            now = resources(server.pid)
            peak["rss_mib"] = max(peak["rss_mib"], now["rss_mib"])
            peak["fds"] = max(peak["fds"], now["fds"])
            await asyncio.sleep(SAMPLE_S)

    async def join_halfway() -> None:
        await asyncio.sleep(seconds / 2)
        await live.join("real-socket-flood", True)

    async def launch_window_cpu() -> float:
        await asyncio.sleep(seconds)
        return (servers.cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)

    watcher = asyncio.ensure_future(watch_resources())
    during, _, launch_cores = await asyncio.gather(
        probe_latency(probe_url, done.done, window_s=seconds),
        join_halfway(),
        launch_window_cpu(),
    )
    flood = await done
    flood_cpu = servers.cpu_seconds(server.pid) - cpu0
    flood_wall = time.monotonic() - t0
    await watcher
    frames_after = await live.mark()
    joined = await live.joined()
    await asyncio.to_thread(attacker.join, 30)
    return {
        "attempts": count,
        "seconds": seconds,
        "attacker": flood,
        "api_before": baseline,
        "api_during": during,
        "server": {"before": before, "peak": peak, "after": resources(server.pid)},
        "server_cpu": {
            "baseline_cores": round(baseline_cores, 3),
            "launch_window_cores": round(launch_cores, 3),
            "ms_per_attempt": round((flood_cpu - baseline_cores * flood_wall) / count * 1000, 3),
        },
        "joiner": joined[0] if joined else None,
        "frames": frames_kept(frames_before, frames_after),
    }


# --- 3. NACK flood -------------------------------------------------------------------------------


class Flooder(Sink):
    """A classroom that records what its video receiver gets (media packets by sequence
    number, with when and their payload size; retransmissions) and can send raw RTCP through
    its own SRTP session."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.arrivals: dict[int, tuple[float, int]] = {}
        self.order: list[int] = []
        self.rtx_packets = 0
        self.rtx_bytes = 0  # the original payloads they carried
        self.media_ssrc: int | None = None
        self.video_receiver: Any = None

    def _hook(self, receiver: Any, kind: str) -> Any:
        count = super()._hook(receiver, kind)
        if kind != "video":
            return count
        self.video_receiver = receiver
        rtx_types: set[int] = set()

        def tapped(packet: Any) -> None:
            if not rtx_types:
                codecs = receiver._RTCRtpReceiver__codecs
                rtx_types.update(
                    pt for pt, c in codecs.items() if c.mimeType.lower() == "video/rtx"
                )
            if packet.payload_type in rtx_types:
                self.rtx_packets += 1
                self.rtx_bytes += len(packet.payload) - 2
            else:
                self.media_ssrc = packet.ssrc
                seq = packet.sequence_number
                if seq not in self.arrivals:
                    self.order.append(seq)
                self.arrivals[seq] = (time.monotonic(), len(packet.payload))
            count(packet)

        return tapped

    def recent(self, seconds: float) -> list[int]:
        now = time.monotonic()
        found = []
        for seq in reversed(self.order[-400:]):
            if now - self.arrivals[seq][0] > seconds:
                break
            found.append(seq)
        return found

    async def send_rtcp(self, data: bytes) -> None:
        await self.video_receiver.transport._send_rtp(data)


def nack_packet(media_ssrc: int, seqs: list[int], entries: int) -> tuple[bytes, set[int]]:
    """A generic NACK naming ``seqs`` (each entry a packet id and a bitmask of the 16 after
    it), the entries repeated up to ``entries``; the packet and the sequence numbers named."""
    wanted = set(seqs)
    fcis = []
    named: set[int] = set()
    for seq in sorted(seqs, key=lambda s: (s - seqs[-1]) & 0xFFFF):
        if seq in named:
            continue
        blp = 0
        named.add(seq)
        for bit in range(16):
            follower = (seq + bit + 1) & 0xFFFF
            if follower in wanted:
                blp |= 1 << bit
                named.add(follower)
        fcis.append(struct.pack("!HH", seq, blp))
    body = b"".join(fcis[i % len(fcis)] for i in range(entries))
    payload = struct.pack("!LL", 0x51, media_ssrc) + body
    header = struct.pack("!BBH", 0x80 | 1, 205, len(payload) // 4)
    return header + payload, named


async def cpu_window(pid: int, seconds: float) -> float:
    """The server's CPU over ``seconds``, in cores."""
    cpu0, t0 = servers.cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (servers.cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)


async def nack_flood(
    api: Api, server: servers.Running, lesson: dict[str, Any], live: LiveLesson, seconds: float
) -> dict[str, Any]:
    flooder = Flooder("flooder")
    await flooder.join(lesson["whep_url"], lesson["whep_token"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if flooder.media_ssrc is not None:
                break
            await asyncio.sleep(0.05)
        assert flooder.media_ssrc is not None, "the flooder got no video"
        await asyncio.sleep(2)  # receiver reports give the server the round trip
        rtx_quiet = flooder.rtx_packets
        base_before = await cpu_window(server.pid, seconds)
        rtx_quiet = flooder.rtx_packets - rtx_quiet
        print(f"NACK flood for {seconds:g} s", flush=True)
        metrics_before = await api.metrics()
        frames_before = await live.mark()
        rtx_before = flooder.rtx_packets, flooder.rtx_bytes
        named: set[int] = set()
        sent_packets = sent_bytes = entries = 0
        cpu0, t0 = servers.cpu_seconds(server.pid), time.monotonic()
        next_at = t0
        while time.monotonic() < t0 + seconds:
            recent = flooder.recent(NACK_WINDOW_S)
            if recent:
                data, names = nack_packet(flooder.media_ssrc, recent, NACK_ENTRIES)
                await flooder.send_rtcp(data)
                named |= names
                sent_packets += 1
                sent_bytes += len(data)
                entries += NACK_ENTRIES
            next_at += 1 / NACKS_PER_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(0.3)  # the last retransmissions land
        flood_cores = (servers.cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
        frames_after = await live.mark()
        metrics_after = await api.metrics()
        resent_packets = flooder.rtx_packets - rtx_before[0]
        resent_bytes = flooder.rtx_bytes - rtx_before[1]
        base_after = await cpu_window(server.pid, seconds)
        connected = flooder.pc.connectionState
    finally:
        await _delete(urljoin(lesson["whep_url"], flooder.location), lesson["whep_token"])
        await flooder.close()
    named_bytes = sum(flooder.arrivals[seq][1] for seq in named)
    baseline_cores = (base_before + base_after) / 2

    def delta(name: str) -> float:
        return metrics_after.get(name, 0.0) - metrics_before.get(name, 0.0)

    return {
        "seconds": seconds,
        "nacks_sent": sent_packets,
        "nack_bytes_sent": sent_bytes,
        "entries": entries,
        "distinct_named": len(named),
        "distinct_named_bytes": named_bytes,
        "resent_packets": resent_packets,
        "resent_bytes": resent_bytes,
        "resent_to_named_bytes": round(resent_bytes / named_bytes, 3) if named_bytes else None,
        "resent_to_nack_bytes": round(resent_bytes / sent_bytes, 2) if sent_bytes else None,
        "retransmissions_without_flood": rtx_quiet,
        "server_nacks_answered": delta("syncclass_nacks_answered_total"),
        "server_nacks_suppressed": delta("syncclass_nacks_suppressed_total"),
        "cpu_cores": {
            "before": round(base_before, 4),
            "flood": round(flood_cores, 4),
            "after": round(base_after, 4),
        },
        "extra_cpu_pct_of_core": round((flood_cores - baseline_cores) * 100, 2),
        "flooder_state": connected,
        "frames": frames_kept(frames_before, frames_after),
    }


# --- the run -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    server = servers.start("syncclass", data_dir)
    live: LiveLesson | None = None
    try:
        lesson = await asyncio.to_thread(
            server.api,
            "POST",
            "/api/lessons",
            {"title": "hardening", "max_classrooms": MAX_CLASSROOMS, "record": False},
        )
        lesson["events_url"] = (
            server.url.replace("http", "ws", 1) + f"/api/lessons/{lesson['id']}/events"
        )
        live = LiveLesson(lesson, args.classrooms)
        firsts = await live.ready()
        await asyncio.sleep(3)  # the lesson settles
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
            api = Api(server, session)
            steady = await live.mark()
            await asyncio.sleep(5)
            quiet = frames_kept(steady, await live.mark())
            result: dict[str, Any] = {"live_first_frame_s": firsts, "frames_without_attack": quiet}
            load = os.getloadavg()[0]
            result["half_open"] = await half_open(
                api, server, lesson, live, args.sessions, args.rounds
            )
            result["half_open"]["load_average"] = [load, load := os.getloadavg()[0]]
            result["socket_flood"] = await socket_flood(
                server, lesson, live, args.sockets, args.socket_seconds
            )
            result["socket_flood"]["load_average"] = [load, load := os.getloadavg()[0]]
            print({k: v for k, v in result["socket_flood"].items() if k != "frames"}, flush=True)
            result["nack_flood"] = await nack_flood(api, server, lesson, live, args.nack_seconds)
            result["nack_flood"]["load_average"] = [load, os.getloadavg()[0]]
            print(result["nack_flood"], flush=True)
    finally:
        if live is not None:
            await live.close()
        server.stop()
    result["log_trouble"] = log_trouble(server.log_path)
    return result


def checks(result: dict[str, Any]) -> dict[str, bool]:
    ho, sf, nf = result["half_open"], result["socket_flood"], result["nack_flood"]
    base = ho["baseline"]
    last = ho["rounds"][-1]
    live_plus_joiner = base["classrooms"] + 1
    frames = [r["frames"]["min_kept_pct"] for r in ho["rounds"]] + [sf["frames"]["min_kept_pct"]]
    return {
        "half_open_gone": all(
            r["gone_after_first_offer_s"] is not None
            and r["gone_after_first_offer_s"] <= TARGETS["gone_s"]
            for r in ho["rounds"]
        ),
        "half_open_not_counted": all(r["max_classrooms"] <= live_plus_joiner for r in ho["rounds"]),
        "half_open_fds_back": last["after"]["fds"] <= base["fds"],
        "half_open_rss_back": last["after"]["rss_mib"]
        <= base["rss_mib"] * (1 + TARGETS["rss_back_pct"] / 100),
        "half_open_joiner": all(
            r["joiner"] is not None and r["joiner"].get("first_frame_s") is not None
            for r in ho["rounds"]
        ),
        "socket_flood_p99": sf["api_during"]["p99_ms"] is not None
        and sf["api_during"]["p99_ms"] <= TARGETS["api_p99_ms"],
        "socket_flood_no_failures": not sf["api_during"]["failures"],
        "socket_flood_joiner": sf["joiner"] is not None
        and sf["joiner"].get("first_frame_s") is not None
        and sf["joiner"].get("event_socket") == "lesson",
        "nack_resent": nf["resent_to_named_bytes"] is not None
        and nf["resent_to_named_bytes"] <= TARGETS["resent_to_named"],
        "nack_cpu": nf["extra_cpu_pct_of_core"] <= TARGETS["extra_cpu_pct"],
        "nack_frames": nf["frames"]["min_kept_pct"] >= TARGETS["frames_kept_pct"],
        "frames_beside": all(f >= TARGETS["frames_kept_beside_pct"] for f in frames),
    }


def phase_load(phase: dict[str, Any]) -> list[str]:
    if "load_average" not in phase:
        return []
    start, end = phase["load_average"]
    return [f"Load average (1 min) from {start:.2f} to {end:.2f}.", ""]


def markdown(result: dict[str, Any]) -> str:
    ho, sf, nf = result["half_open"], result["socket_flood"], result["nack_flood"]
    ok = result["checks"]
    base = ho["baseline"]

    def v(key: str) -> str:
        return "met" if ok[key] else "missed"

    def kept(frames: dict[str, Any]) -> str:
        return " / ".join(f"{k:.1f} %" for k in frames["kept_pct"])

    def join(joiner: dict[str, Any] | None) -> str:
        if joiner is None:
            return "did not report"
        if "error" in joiner:
            return f"refused: {joiner['error']}"
        text = f"first frame after {joiner['first_frame_s']} s"
        if "event_socket" in joiner:
            text += f"; event socket: {joiner['event_socket']} in {joiner.get('event_socket_s')} s"
        return text

    rounds = ho["rounds"]
    gone = ", ".join(
        f"{r['gone_after_first_offer_s']} s "
        f"({r['gone_after_last_answer_s']} s after the last answer)"
        for r in rounds
    )
    load = result["load_average"]
    window = sf["api_during"].get("window")
    launch = (
        ""
        if window is None
        else f"; in the first {sf['seconds']:g} s: {window['p50_ms']} / {window['p99_ms']} ms"
    )
    lines = [
        f"# Hardening benchmark ({result['started']})",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}, "
        f"Python {result['machine']['python']}  ",
        f"Load average (1 min) at the start {load['start']:.2f}, at the end {load['end']:.2f}"
        + (
            ": the machine was shared with other work during the run."
            if max(load["start"], load["end"]) > 0.5
            else "."
        ),
        "",
        f"One lesson of {MAX_CLASSROOMS} places; beside every attack a live lesson in its own "
        f"process: an origin (640x480 30 fps VP8 ~1 Mbit/s + Opus) and "
        f"{result['classrooms']} aiortc classrooms that decode. *Frames kept* is each one's "
        "decoded frames over the origin's frames during the attack (over 100 % when frames sent "
        "just before the window are decoded in it). The server runs with its "
        "defaults except the per-address rate limits (off: every peer here is 127.0.0.1).",
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
        f"| half-open: {ho['sessions']} sessions gone, from the first offer | {gone} | ≤ 30 s | "
        f"{v('half_open_gone')} |",
        f"| half-open: largest classroom count shown | "
        f"{', '.join(str(r['max_classrooms']) for r in rounds)} (live {base['classrooms']} + "
        f"the joiner) | never counts them | {v('half_open_not_counted')} |",
        f"| half-open: server RSS before; peak / after each round | {base['rss_mib']:.0f} MiB; "
        + "; ".join(f"{r['peak']['rss_mib']:.0f} / {r['after']['rss_mib']:.0f}" for r in rounds)
        + f" MiB | back to baseline (± {TARGETS['rss_back_pct']:.0f} %) | "
        f"{v('half_open_rss_back')} |",
        f"| half-open: server fds before; peak / after each round | {base['fds']}; "
        + "; ".join(f"{r['peak']['fds']} / {r['after']['fds']}" for r in rounds)
        + f" | back to baseline | {v('half_open_fds_back')} |",
        "| half-open: a classroom joins meanwhile | "
        + "; ".join(join(r["joiner"]) for r in rounds)
        + f" | joins | {v('half_open_joiner')} |",
        f"| socket flood: API latency p50 / p99 during {sf['attempts']} attempts in "
        f"{sf['seconds']:g} s, until the last of them was closed | {sf['api_during']['p50_ms']} / "
        f"{sf['api_during']['p99_ms']} ms{launch} (before: {sf['api_before']['p50_ms']} / "
        f"{sf['api_before']['p99_ms']} ms) | p99 ≤ 100 ms | {v('socket_flood_p99')} |",
        f"| socket flood: API failures | {sum(sf['api_during']['failures'].values())} of "
        f"{sf['api_during']['requests']} | 0 | {v('socket_flood_no_failures')} |",
        f"| socket flood: a classroom joins meanwhile | {join(sf['joiner'])} | joins | "
        f"{v('socket_flood_joiner')} |",
        f"| NACK flood: bytes resent / distinct bytes named | {nf['resent_bytes']:,} / "
        f"{nf['distinct_named_bytes']:,} = {nf['resent_to_named_bytes']}× ({nf['resent_packets']} "
        f"packets for {nf['distinct_named']} named) | ≤ 2× | {v('nack_resent')} |",
        f"| NACK flood: server CPU, flood vs without | {nf['cpu_cores']['flood'] * 100:.1f} % vs "
        f"{nf['cpu_cores']['before'] * 100:.1f} % before, {nf['cpu_cores']['after'] * 100:.1f} % "
        f"after: {nf['extra_cpu_pct_of_core']:+.1f} % of a core | ≤ +5 % | {v('nack_cpu')} |",
        f"| NACK flood: other classrooms' frames kept | {kept(nf['frames'])} | ≥ 98 % | "
        f"{v('nack_frames')} |",
        "| frames kept beside the half-open sessions and the socket flood | "
        + "; ".join(kept(r["frames"]) for r in rounds)
        + f"; {kept(sf['frames'])} | ≥ 95 % | {v('frames_beside')} |",
        "",
        f"Without an attack the live classrooms kept "
        f"{kept(result['frames_without_attack'])} of the frames over "
        f"{result['frames_without_attack']['window_s']:.0f} s. Unhandled exceptions in the server "
        f"log: {len(result['log_trouble'])}.",
        "",
        "## Half-open sessions",
        "",
        *phase_load(ho),
        "Offers from one join link, each with its own name: "
        + "; ".join(f"{n} {kind}" for kind, n in ho["kinds"].items())
        + ". Sessions and classrooms sampled four times a second; the joiner comes once every "
        "offer is answered. The server's connect timeout is its default (15 s).",
        "",
        "| round | answers | all answered after | server CPU per offer | sessions at most "
        "| gone after the first offer | after the last answer | classrooms at most | frames kept |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['round']} | {', '.join(f'{n}× {s}' for s, n in r['answers'].items())} | "
            f"{r['offers_answered_in_s']} s | {r['server_cpu_ms_per_offer']} ms | "
            f"{r['max_sessions']} | "
            f"{r['gone_after_first_offer_s']} s | {r['gone_after_last_answer_s']} s | "
            f"{r['max_classrooms']} | {kept(r['frames'])} |"
            for r in rounds
        ),
        "",
        f"Baseline (the live lesson alone): {base['sessions']} sessions, {base['tasks']} asyncio "
        f"tasks, RSS {base['rss_mib']:.1f} MiB, {base['fds']} fds. After each round (settled "
        f"{SETTLE_S:g} s): "
        + "; ".join(
            f"{r['after']['sessions']} sessions, {r['after']['tasks']} tasks, "
            f"{r['after']['rss_mib']:.1f} MiB, {r['after']['fds']} fds"
            for r in rounds
        )
        + ".",
        "",
        "## Socket flood",
        "",
        *phase_load(sf),
        f"{sf['attempts']} anonymous upgrades of `/api/lessons/{{id}}/events` from one address, "
        f"launched within {sf['attacker']['launched_within_s']} s, each held until the server "
        f"closed it (at most {HOLD_S:g} s, never answering). What they met: "
        + ", ".join(f"{n}× {what}" for what, n in sf["attacker"]["outcomes"].items())
        + f". The server's first answer came after {sf['attacker']['answer_ms_p50']:.1f} ms "
        f"(p50), {sf['attacker']['answer_ms_p99']:.1f} ms (p99); the upgraded ones were closed "
        f"after {sf['attacker']['upgraded_closed_after_s_median']} s (median, max "
        f"{sf['attacker']['upgraded_closed_after_s_max']} s).",
        "",
        f"The probe (the teacher's `GET /api/lessons/{{id}}` on a connection of its own, every "
        f"{PROBE_EVERY_S * 1000:.0f} ms): {sf['api_before']['requests']} requests before the "
        f"flood, p50 {sf['api_before']['p50_ms']} ms, p99 {sf['api_before']['p99_ms']} ms; "
        f"{sf['api_during']['requests']} during it, p50 {sf['api_during']['p50_ms']} ms, p99 "
        f"{sf['api_during']['p99_ms']} ms, max {sf['api_during']['max_ms']} ms, failures "
        f"{sf['api_during']['failures'] or 'none'}. Server fds before / peak / after: "
        f"{sf['server']['before']['fds']} / {sf['server']['peak']['fds']} / "
        f"{sf['server']['after']['fds']}; RSS {sf['server']['before']['rss_mib']:.0f} / "
        f"{sf['server']['peak']['rss_mib']:.0f} / {sf['server']['after']['rss_mib']:.0f} MiB. "
        f"Frames kept: {kept(sf['frames'])}."
        + (
            ""
            if (cpu := sf.get("server_cpu")) is None
            else f" Server CPU: {cpu['baseline_cores'] * 1000:.0f} millicores before the flood, "
            f"{cpu['launch_window_cores'] * 1000:.0f} while the attempts were launched; "
            f"{cpu['ms_per_attempt']:.2f} ms per attempt above the baseline."
        ),
        "",
        "## NACK flood",
        "",
        *phase_load(nf),
        f"{nf['nacks_sent']} NACKs in {nf['seconds']:g} s ({nf['nack_bytes_sent']:,} bytes, "
        f"{nf['entries']:,} entries, each naming the video packets of the last "
        f"{NACK_WINDOW_S * 1000:.0f} ms with their bitmask). The server resent "
        f"{nf['resent_packets']} packets ({nf['resent_bytes']:,} bytes of payload, "
        f"{nf['resent_to_nack_bytes']}× the NACK bytes) for {nf['distinct_named']} distinct "
        f"packets named ({nf['distinct_named_bytes']:,} bytes); its counters: "
        f"{nf['server_nacks_answered']:.0f} answered, {nf['server_nacks_suppressed']:.0f} not "
        f"resent. The flooder got {nf['retransmissions_without_flood']} retransmissions in the "
        f"same time without the flood and was `{nf['flooder_state']}` at the end. Server CPU "
        f"(user + system, /proc) over {nf['seconds']:g} s windows: "
        f"{nf['cpu_cores']['before'] * 1000:.0f} millicores before, "
        f"{nf['cpu_cores']['flood'] * 1000:.0f} during, {nf['cpu_cores']['after'] * 1000:.0f} "
        f"after.",
    ]
    if result["log_trouble"]:
        lines += ["", "First lines of trouble in the server log:", "", "```"]
        lines += result["log_trouble"][:20]
        lines.append("```")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench hardening",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--socket-seconds", type=float, default=5.0)
    parser.add_argument("--nack-seconds", type=float, default=10.0)
    parser.add_argument("--classrooms", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="hardening", help="file name stem under bench/results")
    args = parser.parse_args(argv)
    if not (
        4 <= args.sessions <= 300
        and 10 <= args.sockets <= 5000
        and 1 <= args.socket_seconds <= 10
        and 2 <= args.nack_seconds <= 30
        and 1 <= args.classrooms <= 4
        and 1 <= args.rounds <= 3
    ):
        parser.error(
            "bounded load: 4-300 sessions, 10-5000 sockets in 1-10 s, a NACK flood of 2-30 s, "
            "1-4 live classrooms, 1-3 rounds"
        )
    loopback_only()
    raise_fd_limit()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        measured = asyncio.run(run(args, Path(tmp)))
    result: dict[str, Any] = {
        "benchmark": "hardening",
        "command": " ".join(["scripts/bench hardening", *(argv or [])]),
        "started": started,
        "machine": report.machine(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "classrooms": args.classrooms,
        **measured,
    }
    result["checks"] = checks(result)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / args.out
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    stem.with_suffix(".md").write_text(text)
    print(text)
