"""Reads one camera's stream (RTSP) with FFmpeg, on a thread of its own, into the RTP packets
of a WebRTC source: the H.264 video re-packetized without decoding, the sound (AAC, G.711 or
whatever FFmpeg decodes) transcoded once to Opus at 48 kHz.

Nothing here touches the event loop: the packets leave in batches through ``on_batch``, which
the owner makes thread-safe. Errors are raised as ``StreamError``, whose message never holds
the URL (FFmpeg's own exceptions carry it, credentials included)."""

from __future__ import annotations

import errno
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import av.error

from .access_units import AccessUnits
from .h264_packetizer import H264Packetizer, parameter_sets, profile_level_id
from .opus_transcoder import AUDIO_CLOCK, AUDIO_PAYLOAD_TYPE, OpusTranscoder

VIDEO_CLOCK = 90_000
VIDEO_PAYLOAD_TYPE = 102
__all__ = ["AUDIO_CLOCK", "AUDIO_PAYLOAD_TYPE", "VIDEO_CLOCK", "VIDEO_PAYLOAD_TYPE"]


class StreamError(Exception):
    """The stream cannot be read; ``code`` is short, the message says what happened in words
    that hold no credential."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StreamInfo:
    """What the stream turned out to carry, once opened."""

    profile_level_id: str
    video_ssrc: int
    audio_ssrc: int | None  # None: the stream has no sound
    audio_codec: str | None


@dataclass
class RtpBatch:
    """RTP packets made from what the camera sent lately, and for each kind the (media time on
    the wall clock, RTP timestamp) of its newest packet, for the sender reports."""

    video: list[bytes] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)
    video_clock: tuple[float, int] | None = None
    audio_clock: tuple[float, int] | None = None


def stream_error(exc: BaseException, timeout_s: float) -> StreamError:
    """``exc`` as a ``StreamError``, in words without the URL."""
    if isinstance(exc, StreamError):
        return exc
    # strerror only: str(exc) of FFmpeg's errors holds the URL, password and all
    words = getattr(exc, "strerror", None) or type(exc).__name__
    if isinstance(exc, av.error.HTTPUnauthorizedError):
        return StreamError(
            "unauthorized", "the camera refused the user name or password (401 Unauthorized)"
        )
    if isinstance(exc, av.error.HTTPForbiddenError):
        return StreamError("forbidden", "the camera refused access to this stream (403 Forbidden)")
    if isinstance(exc, av.error.HTTPNotFoundError):
        return StreamError("not_found", "the camera has no stream at this path (404 Not Found)")
    if isinstance(exc, av.error.HTTPError | av.error.HTTPClientError | av.error.HTTPServerError):
        return StreamError("refused", f"the camera answered with an error ({words})")
    if isinstance(exc, ConnectionRefusedError):
        return StreamError("unreachable", "connection refused: no camera answers at this address")
    code = getattr(exc, "errno", None)
    if isinstance(exc, TimeoutError) or code in (errno.ETIMEDOUT, errno.EAGAIN):
        return StreamError("timeout", f"the camera did not answer within {timeout_s:g} s")
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET, errno.EPIPE):
        return StreamError("unreachable", f"the camera cannot be reached ({words})")
    if isinstance(exc, av.error.InvalidDataError | av.error.EOFError | av.error.UndefinedError):
        return StreamError("bad_stream", "the camera's answer is not a stream that can be read")
    return StreamError("failed", f"the stream cannot be read ({words})")


class StreamReader:
    """Reads ``url`` until it ends, fails or ``stop()`` is called; ``run`` is the thread's
    body. ``on_open`` is told what the stream carries before the first batch."""

    def __init__(
        self,
        url: str,
        *,
        on_open: Callable[[StreamInfo], None],
        on_batch: Callable[[RtpBatch], None],
        timeout_s: float = 5.0,
    ) -> None:
        self._url = url
        self._on_open = on_open
        self._on_batch = on_batch
        self.timeout_s = timeout_s
        self._stop = threading.Event()

    def stop(self) -> None:
        """Stop at the next packet (or within the read timeout, on a stalled stream)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        try:
            container = av.open(
                self._url,
                options={
                    # interleaved in the RTSP connection: one TCP stream, through any firewall
                    "rtsp_transport": "tcp",
                    "timeout": str(int(self.timeout_s * 1_000_000)),
                    "analyzeduration": "1000000",
                    # the pieces as the camera sent them, each with its RTP timestamp:
                    # FFmpeg's parser would cut a picture at parameter sets between its
                    # slices (AccessUnits joins them by timestamp instead)
                    "fflags": "+noparse+nofillin",
                },
                timeout=(self.timeout_s * 2, self.timeout_s),
            )
        except Exception as exc:
            raise stream_error(exc, self.timeout_s) from None
        try:
            self._read(container)
        except StreamError:
            raise
        except Exception as exc:
            raise stream_error(exc, self.timeout_s) from None
        finally:
            container.close()

    def _read(self, container: Any) -> None:
        if not container.streams.video:
            raise StreamError("no_video", "the stream has no video")
        video = container.streams.video[0]
        codec = video.codec_context.name
        if codec != "h264":
            raise StreamError(
                "not_h264",
                f"the camera sends {codec.upper()} video; only H.264 can be forwarded "
                "(set the camera's encoder to H.264)",
            )
        audio = container.streams.audio[0] if container.streams.audio else None
        packetizer = H264Packetizer(random.getrandbits(32), VIDEO_PAYLOAD_TYPE)
        packetizer.learn(parameter_sets(video.codec_context.extradata))
        transcoder = (
            OpusTranscoder(audio.codec_context, audio.time_base, random.getrandbits(32))
            if audio is not None
            else None
        )
        self._on_open(
            StreamInfo(
                profile_level_id(packetizer.sps) if packetizer.sps else "42e01f",
                packetizer.ssrc,
                transcoder.ssrc if transcoder is not None else None,
                audio.codec_context.name if audio is not None else None,
            )
        )
        streams = [video] if audio is None else [video, audio]
        video_ts0 = random.getrandbits(32)
        media_start: float | None = None
        last_at = 0.0
        wall_start = 0.0
        batch = RtpBatch()
        units: AccessUnits[float] = AccessUnits()

        def packetize(unit: bytes, at: float) -> None:
            assert media_start is not None
            timestamp = (video_ts0 + round((at - media_start) * VIDEO_CLOCK)) & 0xFFFFFFFF
            packets, _ = packetizer.packetize(unit, timestamp)
            batch.video.extend(packets)
            batch.video_clock = (wall_start + at - media_start, timestamp)

        for packet in container.demux(streams):
            if self._stop.is_set():
                return
            if packet.size == 0:
                continue
            when = packet.pts if packet.pts is not None else packet.dts
            if when is not None and packet.time_base is not None:
                at = float(when * packet.time_base)
            else:  # RTSP's first packet may come without a time: take it as the newest
                at = last_at if media_start is not None else 0.0
            last_at = at
            if media_start is None:
                media_start, wall_start = at, time.time()
            if packet.stream is video:
                for unit, unit_at in units.push(bytes(packet), at):
                    packetize(unit, unit_at)
            elif transcoder is not None:
                for data, timestamp in transcoder.transcode(packet, media_start):
                    batch.audio.append(data)
                    batch.audio_clock = (wall_start + transcoder.media_time(timestamp), timestamp)
            if batch.video or len(batch.audio) >= 3:
                self._on_batch(batch)
                batch = RtpBatch()
        for unit, unit_at in units.flush():
            packetize(unit, unit_at)
        if batch.video or batch.audio:
            self._on_batch(batch)
