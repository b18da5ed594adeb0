"""Baseline for the benchmarks: aiortc + MediaRelay, decoding once and encoding per subscriber.

    python -m bench.relay_server --port 8090

The naive way to fan out with aiortc: each publisher track is decoded once, shared through
:class:`aiortc.contrib.media.MediaRelay`, and encoded again by every subscriber's sender. It
speaks the WHIP/WHEP subset our load clients use (any Bearer token, no lesson setup), so one
benchmark drives both it and the real server. Loopback only: run it in a private namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import uuid
from dataclasses import dataclass, field

import aioice.ice
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription


def _loopback_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    return ["127.0.0.1"]


@dataclass
class Source:
    """The latest publisher of a lesson: its first track of each kind and that track's codec."""

    pc: RTCPeerConnection
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)
    mime_types: dict[str, str] = field(default_factory=dict)


def _preferences(kind: str, mime_type: str) -> list[RTCRtpCodecCapability]:
    """Every profile aiortc can send of ``mime_type``, plus RTX."""
    wanted = {mime_type.lower(), f"{kind}/rtx"}
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() in wanted]


async def _drain(track: MediaStreamTrack) -> None:
    # aiortc queues decoded frames without bound until someone reads them: keep one reader.
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


async def _read_offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise web.HTTPUnsupportedMediaType(text="the offer must be application/sdp")
    return await request.text()


class RelayServer:
    """Peers by session id and, per lesson, the tracks of its latest publisher."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.sources: dict[str, Source] = {}
        self.peers: dict[str, tuple[str, str, RTCPeerConnection]] = {}  # kind, lesson, pc
        self.tasks: set[asyncio.Task[None]] = set()

    def _new_peer(self, kind: str, lesson_id: str) -> tuple[str, RTCPeerConnection]:
        session = uuid.uuid4().hex
        # iceServers=None would make aiortc add a public STUN server.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers[session] = (kind, lesson_id, pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session)

        return session, pc

    async def close(self, session: str) -> None:
        entry = self.peers.pop(session, None)
        if entry is None:
            return
        _, lesson_id, pc = entry
        if (source := self.sources.get(lesson_id)) is not None and source.pc is pc:
            del self.sources[lesson_id]
        await pc.close()
        # Closing a peer leaves its relayed tracks subscribed to the relay.
        for sender in pc.getSenders():
            if sender.track is not None:
                sender.track.stop()

    async def _answer(
        self, kind: str, lesson_id: str, session: str, pc: RTCPeerConnection, offer: str
    ) -> web.Response:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await self.close(session)
            raise web.HTTPBadRequest(text=f"cannot answer this offer: {exc}") from exc
        location = {"Location": f"/{kind}/{lesson_id}/{session}"}
        sdp = pc.localDescription.sdp
        return web.Response(status=201, text=sdp, content_type="application/sdp", headers=location)

    async def whip(self, request: web.Request) -> web.Response:
        lesson_id = request.match_info["lesson_id"]
        offer = await _read_offer(request)
        session, pc = self._new_peer("whip", lesson_id)
        response = await self._answer("whip", lesson_id, session, pc, offer)
        source = Source(pc)
        for transceiver in pc.getTransceivers():
            if transceiver.receiver.track is not None:
                source.tracks.setdefault(transceiver.kind, transceiver.receiver.track)
        for media in SessionDescription.parse(pc.localDescription.sdp).media:
            if media.rtp.codecs:
                source.mime_types.setdefault(media.kind, media.rtp.codecs[0].mimeType)
        if not source.tracks:
            await self.close(session)
            raise web.HTTPBadRequest(text="the offer sends neither audio nor video")
        for track in source.tracks.values():
            task = asyncio.create_task(_drain(self.relay.subscribe(track, buffered=False)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        self.sources[lesson_id] = source
        return response

    async def whep(self, request: web.Request) -> web.Response:
        lesson_id = request.match_info["lesson_id"]
        offer = await _read_offer(request)
        source = self.sources.get(lesson_id)
        if source is None:
            raise web.HTTPConflict(text=f"nobody publishes in lesson {lesson_id} yet")
        offered = {line[2:].split(" ")[0] for line in offer.splitlines() if line.startswith("m=")}
        session, pc = self._new_peer("whep", lesson_id)
        # An answerer applies codec preferences in setRemoteDescription, so each transceiver
        # exists before it: the offer's first m-line of that kind then takes it over.
        for kind, track in source.tracks.items():
            if kind in offered:
                relayed = self.relay.subscribe(track, buffered=False)
                transceiver = pc.addTransceiver(relayed, direction="sendonly")
                transceiver.setCodecPreferences(_preferences(kind, source.mime_types[kind]))
        return await self._answer("whep", lesson_id, session, pc, offer)

    async def delete(self, request: web.Request) -> web.Response:
        kind = request.path.split("/", 2)[1]
        session = request.match_info["session_id"]
        entry = self.peers.get(session)
        if entry is None or entry[:2] != (kind, request.match_info["lesson_id"]):
            raise web.HTTPNotFound(text="no such session")
        await self.close(session)
        return web.json_response({"deleted": session})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"peers": len(self.peers)})

    async def shutdown(self) -> None:
        await asyncio.gather(*(self.close(session) for session in list(self.peers)))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def serve(port: int) -> None:
    # aioice's get_host_addresses deliberately skips 127.0.0.1, so in a namespace where only
    # lo exists no candidate would be gathered at all; this server only ever uses loopback.
    aioice.ice.get_host_addresses = _loopback_addresses
    server = RelayServer()
    app = web.Application()
    app.router.add_post("/whip/{lesson_id}", server.whip)
    app.router.add_post("/whep/{lesson_id}", server.whep)
    app.router.add_delete("/whip/{lesson_id}/{session_id}", server.delete)
    app.router.add_delete("/whep/{lesson_id}/{session_id}", server.delete)
    app.router.add_get("/api/status", server.status)
    runner = web.AppRunner(app)
    await runner.setup()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await stop.wait()
    finally:
        await server.shutdown()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Baseline WHIP/WHEP server (aiortc MediaRelay).")
    parser.add_argument("--port", type=int, default=8090, help="TCP port on 127.0.0.1")
    asyncio.run(serve(parser.parse_args(argv).port))


if __name__ == "__main__":
    main()
