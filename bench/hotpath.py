"""Fast-path benchmark: the Python and SRTP work of forwarding one packet to one classroom.

    scripts/bench hotpath [--consumers 100] [--packets 2000] [--repeats 7]

One producer fans real RTP packets (a VP8 payload with mid and abs-send-time extensions, as
a browser sends them) out to consumers whose links are the server's own ``DtlsLink`` with a
real SRTP session; only the socket is a stand-in that takes the datagrams and sends nothing.
Both ways a link sends are timed: into the send batch of a shared port (the default), and
to a socket of the peer's own (``--ice-ports``). The kernel's part of sending is left out on
purpose: what is timed is the part this project writes. Each figure is the best of
``--repeats`` runs, in µs per packet per consumer. It is measured in a hot loop, with every
consumer's state in the CPU's caches; in the server, where the kernel and other processes
run in between, the same work costs more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import types
from typing import Any

import pylibsrtp
from aiortc.rtcdtlstransport import State as DtlsState

from media.aiortc_adapter.datagram_guard import GuardedStunProtocol, SharedStunProtocol
from media.aiortc_adapter.rtp_writer import DtlsLink
from media.codec import Codec, HeaderExtension
from media.consumer import Consumer, EgressParameters
from media.keyframe import vp8_keyframe_start
from media.producer import Producer
from media.rtp_packet import RtpPacket, parse_rtp
from media.sender_clock import SenderClock
from media.transport_feedback import ArrivalLog, FeedbackBuilder
from media.udp_mux import SendBatch

from . import report
from .fanout import RESULTS

VP8 = Codec("video/VP8", 90000, 96, rtx_payload_type=97)
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


class _Upstream:
    def request_keyframe(self, ssrc: int) -> None:
        pass

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None:
        pass


class _Socket:
    """Takes each datagram and sends nothing: the kernel is not what is measured."""

    sent = 0

    def sendto(self, data: Any, addr: Any = None) -> None:
        _Socket.sent += 1

    def get_write_buffer_size(self) -> int:
        return 0


class _Batch(SendBatch):
    """A shared port's send batch that takes each fan-out and sends nothing."""

    def flush(self) -> None:
        self._scheduled = False
        _Socket.sent += self.count
        self.count = 0


def _connected_transport(batch: _Batch | None) -> Any:
    """What ``DtlsLink`` reads of an established aiortc DTLS transport, with a real SRTP
    session and a selected ICE pair on a shared port's batch, or else on a UDP socket."""
    policy = pylibsrtp.Policy(
        key=os.urandom(30),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    )
    protocol: Any
    if batch is not None:
        protocol = SharedStunProtocol.__new__(SharedStunProtocol)
        protocol.port = types.SimpleNamespace(batch=batch)
    else:
        protocol = GuardedStunProtocol.__new__(GuardedStunProtocol)
        protocol.transport = _Socket()
    pair = types.SimpleNamespace(protocol=protocol, remote_addr=("127.0.0.1", 9))
    connection = types.SimpleNamespace(_nominated={1: pair})
    return types.SimpleNamespace(
        _state=DtlsState.CONNECTED,
        _set_state=lambda state: None,
        _tx_srtp=pylibsrtp.Session(policy=policy),
        transport=types.SimpleNamespace(_connection=connection),
    )


def _packet(seq: int, keyframe: bool) -> RtpPacket:
    extensions = bytes([0xBE, 0xDE, 0x00, 0x02, 0x10, ord("0"), 0x22, 1, 2, 3, 0, 0])
    # a browser's VP8 payload descriptor: X, S; I (15-bit picture id), L, T; then VP8
    descriptor = bytes([0x90, 0xE0, 0x80 | (seq >> 8 & 0x7F), seq & 0xFF, 3, 0x40])
    vp8 = b"\x00\x00\x00\x9d\x01\x2a\x00\x05\xd0\x02" if keyframe else b"\x01"
    payload = descriptor + vp8 + bytes(1100)
    header = (
        bytes([0x90, 96])
        + seq.to_bytes(2, "big")
        + (seq * 3000).to_bytes(4, "big")
        + (1234).to_bytes(4, "big")
    )
    return parse_rtp(header + extensions + payload)


async def measure(consumers: int, packets: int, repeats: int, shared: bool) -> float:
    """Best time per packet per consumer, in µs (in a running loop: producers set timers)."""
    batch = _Batch(-1) if shared else None
    ingress = [HeaderExtension(1, MID), HeaderExtension(2, ABS_SEND_TIME)]
    producer = Producer("p", "camera", [VP8], ingress, _Upstream(), SenderClock())
    egress = [HeaderExtension(1, MID), HeaderExtension(3, ABS_SEND_TIME)]
    codecs = [Codec("video/VP8", 90000, 100, rtx_payload_type=101)]
    for i in range(consumers):
        consumer = Consumer(f"c{i}", "video", "camera", codecs)
        link = DtlsLink(_connected_transport(batch))
        consumer.attach(link, EgressParameters(1000 + i, 2000 + i, egress))
        consumer.bind(producer)
    producer.on_rtp(_packet(1, True), time.time())
    if batch is not None:
        batch.flush()
    best = float("inf")
    for repeat in range(repeats):
        packets_in = [_packet(2 + repeat * packets + i, False) for i in range(packets)]
        _Socket.sent = 0
        started = time.perf_counter()
        for packet in packets_in:
            producer.on_rtp(packet, 0.0)
        if batch is not None:
            batch.flush()
        elapsed = time.perf_counter() - started
        if _Socket.sent != packets * consumers:
            raise RuntimeError(f"sent {_Socket.sent} datagrams, expected {packets * consumers}")
        best = min(best, elapsed / (packets * consumers) * 1e6)
    return best


def _twcc_datagram(seq: int) -> bytes:
    """A packet as Chrome sends it with transport-cc: mid, abs-send-time and the
    transport-wide sequence number (id 3) in a one-byte extension block."""
    extensions = bytes([0xBE, 0xDE, 0x00, 0x03, 0x10, ord("0"), 0x22, 1, 2, 3])
    extensions += bytes([0x31]) + (seq & 0xFFFF).to_bytes(2, "big") + bytes(3)
    header = bytes([0x90, 96]) + (seq & 0xFFFF).to_bytes(2, "big") + bytes(4) + bytes(4)
    return header + extensions + b"\x10\x01" + bytes(1100)


def measure_feedback(packets: int, repeats: int) -> dict[str, float]:
    """µs per ingress packet: parsing alone (the baseline), and with the transport feedback's
    share: the arrival recorded, and a report built every 50 packets (a 50-ms report at
    about 8 Mbit/s of 1200-byte packets; less often at lower rates)."""
    datagrams = [_twcc_datagram(i) for i in range(packets)]
    best = {"parse": float("inf"), "parse_record": float("inf"), "parse_record_build": 1e9}
    for _ in range(repeats):
        started = time.perf_counter()
        for data in datagrams:
            parse_rtp(data)
        best["parse"] = min(best["parse"], time.perf_counter() - started)
        log = ArrivalLog(3)
        started = time.perf_counter()
        for data in datagrams:
            log.record(parse_rtp(data))
        best["parse_record"] = min(best["parse_record"], time.perf_counter() - started)
        assert len(log.pending) == packets
        log, builder = ArrivalLog(3), FeedbackBuilder()
        started = time.perf_counter()
        for i, data in enumerate(datagrams):
            log.record(parse_rtp(data))
            if i % 50 == 49:
                builder.build(log, 1)
        best["parse_record_build"] = min(best["parse_record_build"], time.perf_counter() - started)
    us = {name: seconds / packets * 1e6 for name, seconds in best.items()}
    return {
        "parse_us": us["parse"],
        "record_us": us["parse_record"] - us["parse"],
        "record_and_build_us": us["parse_record_build"] - us["parse"],
    }


async def measure_ingress(packets: int, repeats: int, descriptor: bool) -> float:
    """Best time per ingress packet of ``Producer.on_rtp`` with no consumer, in µs: with the
    VP8 payload descriptor read and the layer measured (``descriptor``), or with only the
    keyframe test that was there before (the baseline)."""
    ingress = [HeaderExtension(1, MID), HeaderExtension(2, ABS_SEND_TIME)]
    best = float("inf")
    for repeat in range(repeats):
        producer = Producer("p", "camera", [VP8], ingress, _Upstream(), SenderClock())
        if not descriptor:
            producer._is_keyframe = vp8_keyframe_start
        packets_in = [_packet(2 + repeat * packets + i, i % 300 == 0) for i in range(packets)]
        started = time.perf_counter()
        for packet in packets_in:
            producer.on_rtp(packet, 0.0)
        elapsed = time.perf_counter() - started
        best = min(best, elapsed / packets * 1e6)
        producer.close()
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bench hotpath",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--consumers", type=int, default=100)
    parser.add_argument("--packets", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    if not (1 <= args.consumers <= 1000 and 1 <= args.packets <= 20000 and 1 <= args.repeats <= 50):
        parser.error("bounded load: 1-1000 consumers, 1-20000 packets, 1-50 repeats")
    shared = asyncio.run(measure(args.consumers, args.packets, args.repeats, shared=True))
    own = asyncio.run(measure(args.consumers, args.packets, args.repeats, shared=False))
    feedback = measure_feedback(args.packets * 10, args.repeats)
    ingress_before = asyncio.run(measure_ingress(args.packets, args.repeats, descriptor=False))
    ingress = asyncio.run(measure_ingress(args.packets, args.repeats, descriptor=True))
    result = {
        "benchmark": "hotpath",
        "command": "scripts/bench hotpath " + " ".join(argv or []),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": report.machine(),
        "consumers": args.consumers,
        "packets": args.packets,
        "us_per_packet_per_consumer": shared,
        "us_per_packet_per_consumer_port_per_peer": own,
        "transport_feedback_us_per_ingress_packet": feedback,
        "us_per_ingress_packet": ingress,
        "us_per_ingress_packet_keyframe_test_only": ingress_before,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hotpath.json").write_text(json.dumps(result, indent=2))
    text = (
        f"# Fast-path benchmark ({result['started']})\n\n"
        f"Command: `{result['command'].strip()}`  \n"
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['cpu']}, "
        f"Python {result['machine']['python']}\n\n"
        f"Python and SRTP work per packet per consumer (rewrite, encrypt, hand to the socket; "
        f"no kernel), {args.consumers} consumers, best of {args.repeats}:\n\n"
        f"- into a shared port's send batch (the default): **{shared:.2f} µs**\n"
        f"- to a socket of the peer's own (`--ice-ports`): **{own:.2f} µs**\n\n"
        f"Transport-wide congestion feedback, per ingress packet (once, not per consumer), "
        f"beside parsing the packet ({feedback['parse_us']:.2f} µs, the baseline):\n\n"
        f"- arrival recorded: **{feedback['record_us']:.2f} µs**\n"
        f"- recorded, and its share of building the reports: "
        f"**{feedback['record_and_build_us']:.2f} µs**\n"
        f"Per ingress packet (the producer, no consumer): **{ingress:.2f} µs** with the VP8 "
        f"payload descriptor read and the layer measured; {ingress_before:.2f} µs with only "
        f"the keyframe test (the baseline, same run)\n"
    )
    (RESULTS / "hotpath.md").write_text(text)
    print(text)
