"""A source's sound, decoded once and encoded to Opus for WebRTC: 48 kHz stereo, 20 ms
frames, in RTP packets of its own SSRC. Runs on the thread that reads the source."""

from __future__ import annotations

import fractions
import random
from typing import Any, cast

import av

AUDIO_CLOCK = 48_000
OPUS_FRAME = 960  # 20 ms at 48 kHz
OPUS_BITRATE = 64_000
AUDIO_PAYLOAD_TYPE = 111


class OpusTranscoder:
    """One stream's sound, decoded once and encoded to Opus (48 kHz stereo, 20 ms frames)."""

    def __init__(self, decoder: Any, time_base: fractions.Fraction, ssrc: int) -> None:
        self._decoder = decoder
        self._time_base = time_base
        self._resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=AUDIO_CLOCK, frame_size=OPUS_FRAME
        )
        encoder = cast(av.AudioCodecContext, av.CodecContext.create("libopus", "w"))
        encoder.sample_rate = AUDIO_CLOCK
        encoder.layout = "stereo"
        encoder.format = "s16"
        encoder.bit_rate = OPUS_BITRATE
        encoder.time_base = fractions.Fraction(1, AUDIO_CLOCK)
        encoder.options = {"application": "audio", "fec": "1", "packet_loss": "3"}
        self._encoder = encoder
        self.ssrc = ssrc
        self._sequence_number = 0
        self._start: int | None = None  # RTP timestamp of the first Opus frame
        self._timestamp0 = random.getrandbits(32)
        self._samples_in = 0
        self._frames_out = 0

    def transcode(self, packet: av.Packet, media_start: float) -> list[tuple[bytes, int]]:
        """The Opus RTP packets (with their RTP timestamps) that ``packet`` completes."""
        out: list[tuple[bytes, int]] = []
        for frame in self._decoder.decode(packet):
            if self._start is None:
                at = float(frame.pts * self._time_base) if frame.pts is not None else media_start
                self._start = round(max(0.0, at - media_start) * AUDIO_CLOCK)
            frame.pts = None
            for resampled in self._resampler.resample(frame):
                resampled.pts = self._samples_in
                resampled.time_base = fractions.Fraction(1, AUDIO_CLOCK)
                self._samples_in += resampled.samples
                for encoded in self._encoder.encode(resampled):
                    out.append(self._rtp(bytes(encoded)))
        return out

    def _rtp(self, payload: bytes) -> tuple[bytes, int]:
        assert self._start is not None
        timestamp = (self._timestamp0 + self._start + self._frames_out * OPUS_FRAME) & 0xFFFFFFFF
        self._frames_out += 1
        header = bytes(
            (
                0x80,
                AUDIO_PAYLOAD_TYPE,
                self._sequence_number >> 8,
                self._sequence_number & 0xFF,
            )
        )
        header += timestamp.to_bytes(4, "big") + self.ssrc.to_bytes(4, "big")
        self._sequence_number = (self._sequence_number + 1) & 0xFFFF
        return header + payload, timestamp

    def media_time(self, timestamp: int) -> float:
        """Seconds from the stream's start to the frame stamped ``timestamp``."""
        return ((timestamp - self._timestamp0) & 0xFFFFFFFF) / AUDIO_CLOCK
