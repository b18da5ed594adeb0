"""GET /api/status: what the server holds right now, for the operator (teacher key)."""

from __future__ import annotations

import asyncio
import os
import time

from aiohttp import web

from media.drops import DROPPED
from media.layers import source_layers
from media.subscriber import Subscriber
from media.tcp_mux import TcpPort
from media.udp_mux import SharedPort
from signaling.auth import require_admin
from signaling.classrooms import Classroom
from signaling.json_answers import json_response
from signaling.keys import LESSONS
from signaling.live_lesson import LiveLesson

STARTED_AT = web.AppKey("started_at", float)


def _udp_sockets() -> int:
    """UDP sockets this process holds (Linux), so a leak of ICE ports shows."""
    inodes = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return -1
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile, or the directory listing's own descriptor
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        count += sum(1 for row in rows if len(row.split()) > 9 and row.split()[9] in inodes)
    return count


def _file_descriptors() -> int:
    """Open file descriptors of this process (Linux), so a leak of files or sockets shows."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError:
        return -1


def _shared_port(port: SharedPort) -> dict[str, object]:
    batch = port.batch
    return {
        "address": port.address[0],
        "port": port.address[1],
        "connections": port.users,
        # forwarded datagrams sent in batches; queued when the socket was full; lost
        "batched": batch.sent if batch else 0,
        "queued": batch.queued if batch else 0,
        "failed": batch.failed if batch else 0,
    }


def _video_layers(lessons: list[LiveLesson]) -> list[dict[str, object]]:
    """Per lesson and source, the video layers arriving (resolution, frame rate, bitrate) and
    the teacher's uplink as the teacher's browser estimates it (None: not reported)."""
    now = time.time()
    out: list[dict[str, object]] = []
    for live in lessons:
        router = live.router
        if router is None:
            continue
        uplinks = live.fresh_uplinks(now)
        for source, layers in source_layers(router.producers).items():
            out.append(
                {
                    "lesson": router.id,
                    "source": source,
                    "layers": layers,
                    "uplink": uplinks.get(source),
                }
            )
    return out


def _tcp_port(port: TcpPort) -> dict[str, object]:
    counts = port.counts
    return {
        "address": port.address[0],
        "port": port.address[1],
        "connections": port.users,
        "half_open": port.half_open,
        "accepted": counts.accepted,
        # streams refused (over the caps), expired (no answered check in time), closed for a
        # first frame that is no check for a known ufrag, or for an oversized frame
        "refused": counts.refused,
        "expired": counts.expired,
        "garbage": counts.garbage,
        "oversized": counts.oversized,
        # datagrams not sent because the stream's backlog was over its limit
        "backlog_dropped": counts.media_dropped,
    }


def _link(lesson_id: str, name: str, peer: Subscriber, path: str | None) -> dict[str, object]:
    """One classroom's link: its estimate, what it is sent (高清 / 仅声音) and why, and the
    packets the server sent it (retransmissions and probes included)."""
    stats = [c.stats for c in peer.consumers]
    return {
        "lesson": lesson_id,
        "name": name,
        # 直连 UDP / 直连 TCP / 中继: the path its page reports (None before it does)
        "path": path,
        **peer.gate.as_json(),
        "packets": sum(s.packets for s in stats),
        # the live picture's packets alone (none while the classroom rewinds: ``held``)
        "video_packets": sum(c.stats.packets for c in peer.consumers if c.kind == "video"),
        "retransmitted": sum(s.retransmitted for s in stats),
        "padding_kb": round(sum(s.padding_octets for s in stats) / 1000, 1),
        "nacks": sum(s.nacks for s in stats),
        "not_resent": sum(s.nacks_suppressed + s.too_late for s in stats),
        "keyframe_requests": sum(s.keyframe_requests for s in stats),
    }


def _path(classroom: Classroom | None) -> str | None:
    return None if classroom is None else classroom.path


async def status(request: web.Request) -> web.Response:
    require_admin(request)
    lessons = request.app[LESSONS]
    routers = lessons.routers()
    shared = lessons.network.shared
    tcp = lessons.network.tcp
    return json_response(
        {
            "uptime_s": round(time.time() - request.app[STARTED_AT], 1),
            "routers": len(routers),
            "peers": sum(len(r.peers) for r in routers),
            "producers": sum(len(r.producers) for r in routers),
            "consumers": sum(len(r.consumers()) for r in routers),
            "sessions": lessons.sessions(),
            "tasks": len(asyncio.all_tasks()),
            "udp_sockets": _udp_sockets(),
            # the one UDP port per address that every peer shares (none with --ice-ports)
            "shared_ports": [_shared_port(port) for port in (shared.opened() if shared else [])],
            # the ICE-TCP port per address (none with --ice-tcp-port off)
            "tcp_ports": [_tcp_port(port) for port in (tcp.opened() if tcp else [])],
            "fds": _file_descriptors(),
            # datagrams and packets the media ports threw away since start, by reason
            "media_dropped": DROPPED.snapshot(),
            "video_layers": _video_layers(lessons.all()),
            # each classroom's link: estimate, state (full / reduced / audio_only), why, layers fed
            "classrooms": [
                _link(live.id, name, peer, _path(live.room.get(name)))
                for live in lessons.all()
                for name, peer in live.links().items()
            ],
        }
    )


def add_routes(app: web.Application) -> None:
    app[STARTED_AT] = time.time()
    app.router.add_get("/api/status", status)
