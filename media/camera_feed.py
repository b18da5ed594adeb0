"""The producers of a camera source that the server makes itself, from RTP packets made off
the event loop (a camera pulled over RTSP, an encoder pushing RTMP): made when a stream opens,
fed in batches, given back to the router when it ends, as a WHIP publisher's would be."""

from __future__ import annotations

import time
from collections.abc import Callable

from .codec import Codec
from .opus_transcoder import AUDIO_CLOCK, AUDIO_PAYLOAD_TYPE
from .producer import Producer, Upstream
from .rtp_packet import RtpError, parse_rtp
from .sender_clock import SenderClock
from .stream_reader import VIDEO_CLOCK, VIDEO_PAYLOAD_TYPE, RtpBatch

SENDER_REPORT_INTERVAL_S = 1.0


class Camera:
    """The producers' upstream: nothing can be asked of a camera or an encoder at the other
    end of RTSP or RTMP (requests are counted, for the curious)."""

    def __init__(self) -> None:
        self.keyframe_requests = 0

    def request_keyframe(self, ssrc: int) -> None:
        self.keyframe_requests += 1

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None:
        pass  # the stream came over TCP: the server lost nothing to ask for again


class CameraFeed:
    def __init__(
        self,
        source: str,
        add_producer: Callable[[Producer], None],
        remove_producer: Callable[[Producer], None],
        upstream: Upstream,
    ) -> None:
        self.source = source
        self.producers: list[Producer] = []
        self._add_producer = add_producer
        self._remove_producer = remove_producer
        self._upstream = upstream
        self._reported: dict[Producer, float] = {}

    def open(self, producer_id: str, profile_level_id: str, with_audio: bool) -> None:
        """A stream opened: its producers (H.264 video, Opus sound if it has sound) go to
        the router, replacing whatever fed the source before."""
        clock = SenderClock()  # one per stream: its tracks share a clock
        video = Codec(
            "video/H264",
            VIDEO_CLOCK,
            VIDEO_PAYLOAD_TYPE,
            parameters={
                "level-asymmetry-allowed": "1",
                "packetization-mode": "1",
                "profile-level-id": profile_level_id,
            },
        )
        self.producers = [
            Producer(f"{producer_id}/video", self.source, [video], [], self._upstream, clock)
        ]
        if with_audio:
            opus = Codec(
                "audio/opus",
                AUDIO_CLOCK,
                AUDIO_PAYLOAD_TYPE,
                channels=2,
                parameters={"minptime": 10, "useinbandfec": 1},
            )
            self.producers.append(
                Producer(f"{producer_id}/audio", self.source, [opus], [], self._upstream, clock)
            )
        for producer in self.producers:
            self._add_producer(producer)

    def feed(self, batch: RtpBatch) -> None:
        """Hand one batch to the producers (with a sender report a second, for lip sync)."""
        if not self.producers:
            return
        arrival = time.time()
        video = self.producers[0]
        audio = self.producers[1] if len(self.producers) > 1 else None
        for producer, packets, clock in (
            (video, batch.video, batch.video_clock),
            (audio, batch.audio, batch.audio_clock),
        ):
            if producer is None or not packets:
                continue
            if clock is not None and arrival - self._reported.get(producer, 0.0) >= (
                SENDER_REPORT_INTERVAL_S
            ):
                self._reported[producer] = arrival
                producer.on_sender_report(clock[0], clock[1], arrival)
            for data in packets:
                try:
                    producer.on_rtp(parse_rtp(data), arrival)
                except RtpError:
                    continue

    def close(self, give_back: bool = True) -> None:
        """The stream ended: the producers go back to the router (``give_back`` false when
        the router has taken them already); its consumers keep their place for the next."""
        producers, self.producers = self.producers, []
        self._reported.clear()
        if give_back:
            for producer in producers:
                self._remove_producer(producer)
