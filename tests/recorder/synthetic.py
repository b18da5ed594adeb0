"""Packet logs written the way the recorder writes them, from the test clips packetized by
aiortc (another implementation than ours), with arrival times chosen by the test."""

from __future__ import annotations

import fractions
import random
from pathlib import Path

import av
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from recorder import packet_log
from recorder.layout import log_name
from tests.support.media import EncodedFrame


class TrackLog:
    """One track's log; each ``producer`` call writes a new producer's packets into it."""

    def __init__(self, directory: Path, source: str, kind: str) -> None:
        self.kind = kind
        self.log = packet_log.LogFile(directory / log_name(source, kind))

    def producer(
        self,
        frames: list[EncodedFrame],
        start: float,
        *,
        codec: str = "VP8",
        ended: bool = True,
        cut_last_packet: bool = False,
    ) -> None:
        """Packets of ``frames`` arriving from ``start`` (wall clock), with a new SSRC and
        timestamp base; ``ended`` writes the producer's end, ``cut_last_packet`` loses the
        last packet as a kill -9 would."""
        rate = 90000 if self.kind == "video" else 48000
        mime = f"video/{codec}" if self.kind == "video" else "audio/opus"
        chunks = [packet_log.epoch_record({"mime_type": mime, "clock_rate": rate, "at": start})]
        records = [record for _, record in self.records(frames, start, codec=codec)]
        if cut_last_packet:
            records.pop()
        chunks += records
        if ended:
            chunks.append(packet_log.end_record(start + frames[-1].pts / rate + 0.05))
        self.log.write(chunks)

    def records(
        self, frames: list[EncodedFrame], start: float, *, codec: str = "VP8"
    ) -> list[tuple[float, bytes]]:
        """The packet records of ``frames`` arriving from ``start`` (a new SSRC and timestamp
        base), each with its arrival time, for a test that appends them as time goes on."""
        rate = 90000 if self.kind == "video" else 48000
        mime = f"video/{codec}" if self.kind == "video" else "audio/opus"
        rng = random.Random(start)
        ssrc, base, seq = rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16)
        encoder = None
        if self.kind == "video":
            encoder = get_encoder(
                RTCRtpCodecParameters(mimeType=mime, clockRate=rate, payloadType=96)
            )
        records = []
        for frame in frames:
            payloads = [frame.data]
            if encoder is not None:
                packet = av.Packet(frame.data)
                packet.pts = frame.pts
                packet.time_base = fractions.Fraction(1, rate)
                payloads, _ = encoder.pack(packet)
            arrival = start + frame.pts / rate + 0.002
            for i, payload in enumerate(payloads):
                flags = (packet_log.FLAG_MARKER if i == len(payloads) - 1 else 0) | (
                    packet_log.FLAG_KEYFRAME if i == 0 and frame.keyframe else 0
                )
                records.append(
                    (
                        arrival,
                        packet_log.packet_record(
                            arrival,
                            (base + frame.pts) & 0xFFFFFFFF,
                            ssrc,
                            seq & 0xFFFF,
                            flags,
                            96,
                            payload,
                        ),
                    )
                )
                seq += 1
        return records

    def close(self) -> None:
        self.log.close()
