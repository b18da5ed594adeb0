"""The RTMP port: encoders connect and publish (``rtmp://host:port/live`` with a stream key),
the key is checked by ``authorize`` before any media is read, and the audio and video
messages of an accepted publisher go to the source it was given."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from .rtmp_protocol import (
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    SET_PEER_BANDWIDTH,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkReader,
    ChunkWriter,
    RtmpError,
    amf_decode,
    handshake,
)
from .stream_reader import StreamError

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0
# an encoder that sends nothing for this long (not even its sound) has gone
IDLE_TIMEOUT_S = 20.0
WINDOW = 2_500_000
MAX_CONNECTIONS = 64


class PushTarget(Protocol):
    """Where an accepted publisher's stream goes (``media.pushed_source.PushedSource``)."""

    on_abort: Callable[[StreamError], None] | None

    def tag(self, kind: int, timestamp: int, payload: bytes) -> None: ...

    def end(self, error: StreamError | None = None) -> None: ...


class PushRefused(Exception):
    """The stream key does not let this publisher in; the message says why (no secret)."""


Authorize = Callable[[str, str, str], Awaitable[PushTarget]]


class RtmpServer:
    """Owns the listening socket and every connection on it; ``close`` ends them all."""

    def __init__(self, host: str, port: int, authorize: Authorize) -> None:
        self.host = host
        self.port = port
        self._authorize = authorize
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.refused = 0

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        logger.info("RTMP publishing on %s:%d", self.host, self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= MAX_CONNECTIONS or task is None:
            writer.close()
            return
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        try:
            await _Connection(reader, writer, address, self).run()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except RtmpError as exc:
            logger.info("RTMP %s: %s", address, exc)
        finally:
            self._connections.discard(task)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)


class _Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: str,
        server: RtmpServer,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._address = address
        self._server = server
        self._chunks = ChunkReader(reader)
        self._out = ChunkWriter(writer)
        self._app = ""
        self._target: PushTarget | None = None
        self._acknowledged = 0
        self._window = WINDOW

    async def run(self) -> None:
        await asyncio.wait_for(handshake(self._reader, self._writer), HANDSHAKE_TIMEOUT_S)
        error: StreamError | None = None
        try:
            while True:
                message = await asyncio.wait_for(self._chunks.message(), IDLE_TIMEOUT_S)
                self._acknowledge()
                if message.type in (AUDIO, VIDEO):
                    if self._target is None:
                        raise RtmpError("media before an accepted publish")
                    self._target.tag(message.type, message.timestamp, message.payload)
                elif message.type in (COMMAND_AMF0, COMMAND_AMF3):
                    payload = message.payload
                    if message.type == COMMAND_AMF3:
                        payload = payload[1:]
                    if not await self._command(amf_decode(payload), message.stream_id):
                        return
                elif message.type == WINDOW_ACK_SIZE:
                    self._window = max(int.from_bytes(message.payload[:4], "big"), 1)
        except TimeoutError:
            error = StreamError("timeout", f"the encoder sent nothing for {IDLE_TIMEOUT_S:g} s")
            raise
        except RtmpError as exc:
            error = StreamError("bad_stream", f"the encoder broke RTMP ({exc})")
            raise
        finally:
            if self._target is not None:
                self._target.end(error)

    def _acknowledge(self) -> None:
        received = self._chunks.received
        if received - self._acknowledged >= self._window // 2:
            self._acknowledged = received
            self._out.send(3, (received & 0xFFFFFFFF).to_bytes(4, "big"))

    async def _command(self, values: list[object], stream_id: int) -> bool:
        """Answer one command; False once the connection is to close."""
        if not values or not isinstance(values[0], str):
            return True
        name = values[0]
        transaction = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        if name == "connect":
            properties = values[2] if len(values) > 2 and isinstance(values[2], dict) else {}
            self._app = str(properties.get("app", ""))
            self._out.send(WINDOW_ACK_SIZE, WINDOW.to_bytes(4, "big"))
            self._out.send(SET_PEER_BANDWIDTH, WINDOW.to_bytes(4, "big") + b"\x02")
            self._out.set_chunk_size(4096)
            self._out.command(
                "_result",
                transaction,
                {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                {
                    "level": "status",
                    "code": "NetConnection.Connect.Success",
                    "description": "Connection succeeded.",
                    "objectEncoding": 0.0,
                },
            )
        elif name == "createStream":
            self._out.command("_result", transaction, None, 1.0)
        elif name in ("releaseStream", "FCPublish", "FCUnpublish"):
            self._out.command("_result", transaction, None, None)
        elif name == "publish":
            key = values[3] if len(values) > 3 and isinstance(values[3], str) else ""
            return await self._publish(key, transaction, stream_id or 1)
        elif name == "deleteStream":
            return False
        await self._writer.drain()
        return True

    async def _publish(self, key: str, transaction: float, stream_id: int) -> bool:
        if self._target is not None:
            raise RtmpError("a second publish on one connection")
        try:
            target = await self._server._authorize(self._app, key, self._address)
        except PushRefused as exc:
            self._server.refused += 1
            logger.warning("RTMP %s: publishing refused: %s", self._address, exc)
            self._status(transaction, stream_id, "error", "NetStream.Publish.BadName", str(exc))
            await self._writer.drain()
            return False
        self._target = target
        target.on_abort = self._abort
        self._status(transaction, stream_id, "status", "NetStream.Publish.Start", "publishing")
        await self._writer.drain()
        return True

    def _status(
        self, transaction: float, stream_id: int, level: str, code: str, description: str
    ) -> None:
        self._out.command(
            "onStatus",
            transaction,
            None,
            {"level": level, "code": code, "description": description},
            stream_id=stream_id,
        )

    def _abort(self, error: StreamError) -> None:
        """The stream cannot be used (or another took its place): say so and hang up."""
        if self._writer.is_closing():
            return
        try:
            self._status(0.0, 1, "error", "NetStream.Publish.Failed", str(error))
        except (ConnectionError, RuntimeError):
            pass
        self._writer.close()
