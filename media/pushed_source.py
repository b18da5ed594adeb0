"""A camera source an encoder pushes over RTMP (OBS, a hardware encoder, a 录播 system): the
FLV audio and video it sends become the same producers as a WHIP publisher's, through a
thread of its own that re-packetizes the H.264 (no decoding) and transcodes the sound once to
Opus; the event loop only reads the connection and hands the tags over."""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import av

from .camera_feed import Camera, CameraFeed
from .h264_packetizer import (
    H264Packetizer,
    avcc_length_size,
    parameter_sets,
    profile_level_id,
)
from .opus_transcoder import OpusTranscoder
from .producer import Producer
from .pulled_source import PullState, PullStatus
from .rtmp_protocol import AUDIO, VIDEO
from .stream_reader import VIDEO_CLOCK, RtpBatch, StreamError, StreamInfo

logger = logging.getLogger(__name__)

MILLISECONDS = fractions.Fraction(1, 1000)
FLV_VIDEO_CODECS = {2: "Sorenson H.263", 3: "Screen video", 4: "VP6", 5: "VP6 alpha", 7: "H.264"}
FLV_AVC = 7
FLV_AAC, FLV_MP3, FLV_ALAW, FLV_MULAW = 10, 2, 7, 8
# the most tags waiting for the converter: a thread that falls this far behind (a minute of a
# 30 fps stream with its sound) is stuck, and the push is ended
MAX_BACKLOG = 5000


def _audio_decoder(sound_format: int, header: int, config: bytes | None) -> Any:
    if sound_format == FLV_AAC:
        decoder = av.CodecContext.create("aac", "r")
        decoder.extradata = config
        return decoder
    name = {FLV_MP3: "mp3", FLV_ALAW: "pcm_alaw", FLV_MULAW: "pcm_mulaw"}[sound_format]
    decoder = cast(av.AudioCodecContext, av.CodecContext.create(name, "r"))
    if sound_format != FLV_MP3:
        decoder.sample_rate = 8000
        decoder.layout = "stereo" if header & 0x01 else "mono"
    return decoder


class FlvConverter:
    """FLV tags (as RTMP carries them) into RTP batches; ``run`` is the thread's body."""

    def __init__(
        self,
        tags: queue.Queue[tuple[int, int, bytes] | None],
        on_open: Callable[[StreamInfo], None],
        on_batch: Callable[[RtpBatch], None],
    ) -> None:
        self._tags = tags
        self._on_open = on_open
        self._on_batch = on_batch
        self._packetizer = H264Packetizer(random.getrandbits(32), 102)
        self._transcoder: OpusTranscoder | None = None
        self._audio_ssrc = random.getrandbits(32)
        self._audio_seen = False
        self._opened = False
        self._video_ts0 = random.getrandbits(32)
        self._media_start: float | None = None
        self._wall_start = 0.0

    def run(self) -> None:
        batch = RtpBatch()
        while True:
            item = self._tags.get()
            if item is None:
                break
            kind, timestamp, payload = item
            if kind == VIDEO:
                self._video(timestamp, payload, batch)
            elif kind == AUDIO:
                self._audio(timestamp, payload, batch)
            if batch.video or len(batch.audio) >= 3:
                self._on_batch(batch)
                batch = RtpBatch()
        if batch.video or batch.audio:
            self._on_batch(batch)

    def _start(self, seconds: float) -> float:
        if self._media_start is None:
            self._media_start, self._wall_start = seconds, time.time()
        return self._media_start

    def _video(self, timestamp: int, payload: bytes, batch: RtpBatch) -> None:
        if len(payload) < 5:
            return
        if payload[0] & 0x80:  # enhanced RTMP: a FourCC names the codec
            fourcc = payload[1:5].decode("ascii", "replace")
            raise StreamError(
                "not_h264", f"the encoder sends {fourcc} video; only H.264 can be forwarded"
            )
        codec = payload[0] & 0x0F
        if codec != FLV_AVC:
            name = FLV_VIDEO_CODECS.get(codec, f"codec {codec}")
            raise StreamError(
                "not_h264",
                f"the encoder sends {name} video; only H.264 can be forwarded "
                "(set its encoder to H.264, x264)",
            )
        packet_type = payload[1]
        composition = int.from_bytes(payload[2:5], "big", signed=True)
        if packet_type == 0:  # the decoder configuration (avcC): SPS, PPS, NAL length size
            self._packetizer.learn(parameter_sets(payload[5:]))
            self._packetizer.length_size = avcc_length_size(payload[5:]) or 4
            return
        if packet_type != 1:
            return
        if self._packetizer.length_size is None:
            self._packetizer.length_size = 4  # FLV is AVCC, whether or not a header said so
        if not self._opened:
            self._opened = True
            sps = self._packetizer.sps
            self._on_open(
                StreamInfo(
                    profile_level_id(sps) if sps else "42e01f",
                    self._packetizer.ssrc,
                    self._audio_ssrc if self._audio_seen else None,
                    None,
                )
            )
        at = (timestamp + composition) / 1000
        start = self._start(timestamp / 1000)
        rtp_timestamp = (self._video_ts0 + round((at - start) * VIDEO_CLOCK)) & 0xFFFFFFFF
        packets, _ = self._packetizer.packetize(payload[5:], rtp_timestamp)
        batch.video.extend(packets)
        batch.video_clock = (self._wall_start + at - start, rtp_timestamp)

    def _audio(self, timestamp: int, payload: bytes, batch: RtpBatch) -> None:
        if not payload:
            return
        sound_format = payload[0] >> 4
        if sound_format not in (FLV_AAC, FLV_MP3, FLV_ALAW, FLV_MULAW):
            return  # a sound this server does not decode: the picture goes on without it
        self._audio_seen = True
        if sound_format == FLV_AAC:
            if len(payload) < 2:
                return
            if payload[1] == 0:  # AudioSpecificConfig
                decoder = _audio_decoder(sound_format, payload[0], payload[2:])
                self._transcoder = OpusTranscoder(decoder, MILLISECONDS, self._audio_ssrc)
                return
            data = payload[2:]
        else:
            if self._transcoder is None:
                decoder = _audio_decoder(sound_format, payload[0], None)
                self._transcoder = OpusTranscoder(decoder, MILLISECONDS, self._audio_ssrc)
            data = payload[1:]
        if self._transcoder is None or not self._opened or not data:
            return  # sound before the first picture is not kept: the picture sets the clock
        packet = av.Packet(data)
        packet.pts = packet.dts = timestamp
        packet.time_base = MILLISECONDS
        start = self._start(timestamp / 1000)
        for rtp, rtp_timestamp in self._transcoder.transcode(packet, start):
            batch.audio.append(rtp)
            batch.audio_clock = (
                self._wall_start + self._transcoder.media_time(rtp_timestamp),
                rtp_timestamp,
            )


class PushedSource:
    """Made by ``Router.push`` when an encoder starts publishing; ``tag`` is given each of its
    audio and video messages, ``end`` when its connection ends. ``on_abort`` (set by the
    connection) is called when the stream cannot be used: the connection is to be closed."""

    role = "pushed"

    def __init__(
        self,
        router_id: str,
        source: str,
        *,
        add_producer: Callable[[Producer], None],
        remove_producer: Callable[[Producer], None],
        released: Callable[[PushedSource], None],
        on_state: Callable[[PullStatus], None],
    ) -> None:
        self.router_id = router_id
        self.source = source
        self.status = PullStatus(PullState.CONNECTING)
        self.camera = Camera()
        self.feed = CameraFeed(source, add_producer, remove_producer, self.camera)
        self.closed = False
        self.on_abort: Callable[[StreamError], None] | None = None
        self._released = released
        self._on_state = on_state
        self._tags: queue.Queue[tuple[int, int, bytes] | None] = queue.Queue()
        self._ended = False
        self._loop = asyncio.get_running_loop()
        converter = FlvConverter(
            self._tags, self._threadsafe(self._opened), self._threadsafe(self._batch)
        )
        self._thread = threading.Thread(
            target=self._convert, args=(converter,), name=f"push {router_id}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<PushedSource {self.router_id} {self.source} {self.status.state}>"

    def _threadsafe(self, callback: Callable[..., None]) -> Callable[..., None]:
        def call(*args: object) -> None:
            try:
                self._loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:
                pass  # the loop has closed: the server is gone

        return call

    def _convert(self, converter: FlvConverter) -> None:
        try:
            converter.run()
        except StreamError as exc:
            self._threadsafe(self._failed)(exc)
        except Exception as exc:  # a bug here must not take the server down
            error = StreamError("failed", f"the stream cannot be read ({type(exc).__name__})")
            self._threadsafe(self._failed)(error)

    # from the connection, on the loop

    def tag(self, kind: int, timestamp: int, payload: bytes) -> None:
        if self._ended:
            return
        if self._tags.qsize() > MAX_BACKLOG:
            self._failed(StreamError("failed", "the stream comes faster than it can be read"))
            return
        self._tags.put((kind, timestamp, payload))

    def end(self, error: StreamError | None = None) -> None:
        """The encoder's connection ended (``error``: why, if it broke)."""
        if self._ended:
            return
        self._ended = True
        self._tags.put(None)
        self.feed.close(give_back=not self.closed)
        reason = error or StreamError("ended", "the encoder stopped pushing")
        self._set(PullStatus(PullState.LOST, str(reason), reason.code))

    # from the converter's thread, on the loop

    def _opened(self, info: StreamInfo) -> None:
        if self._ended or self.closed:
            return
        with_audio = info.audio_ssrc is not None
        self.feed.open(f"{self.router_id}/{self.source}/push", info.profile_level_id, with_audio)
        logger.info(
            "lesson %s: %s pushed over RTMP: H.264 %s, sound %s",
            self.router_id,
            self.source,
            info.profile_level_id,
            "transcoded to Opus" if info.audio_ssrc is not None else "none",
        )

    def _batch(self, batch: RtpBatch) -> None:
        if self._ended or self.closed:
            return
        self.feed.feed(batch)
        if batch.video and self.feed.producers and self.status.state is not PullState.LIVE:
            self._set(PullStatus(PullState.LIVE))

    def _failed(self, error: StreamError) -> None:
        if self._ended or self.closed:
            return
        logger.warning("lesson %s: %s push %s: %s", self.router_id, self.source, error.code, error)
        self.end(error)
        if self.on_abort is not None:
            self.on_abort(error)

    def _set(self, status: PullStatus) -> None:
        changed = status != self.status
        self.status = status
        if changed and not self.closed:
            try:
                self._on_state(status)
            except Exception:
                logger.exception("lesson %s: %s source state", self.router_id, self.source)

    # lifetime

    async def close(self) -> None:
        """Another push (or the lesson's end) replaces this one: its producers go back."""
        if self.closed:
            return
        if not self._ended:
            self._ended = True
            self._tags.put(None)
            self.feed.close()
        self.closed = True
        self.status = PullStatus(PullState.STOPPED)
        if self.on_abort is not None:
            self.on_abort(StreamError("replaced", "another push took this camera's place"))
        self._released(self)

    async def router_closed(self) -> None:
        if not self._ended:
            self._ended = True
            self._tags.put(None)
        self.closed = True
        self.feed.close(give_back=False)
        self.status = PullStatus(PullState.STOPPED)
        if self.on_abort is not None:
            self.on_abort(StreamError("ended", "the lesson has ended"))
