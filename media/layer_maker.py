"""Makes a lower layer of a single-layer source: the source's RTP packets back into frames
(media.depacketizer), decoded, scaled down and encoded again in the source's codec, into the
RTP packets of a stream of its own that keeps the source's timestamps.

Plain work with no event loop in it: media.made_layer runs one ``LayerMaker`` on a thread of
its own and carries the packets to and from the loop."""

from __future__ import annotations

import fractions
import logging
import random
import struct
from dataclasses import dataclass, field
from typing import Any

import av
import av.error

from .depacketizer import Framer
from .h264_packetizer import MAX_PAYLOAD, H264Packetizer

logger = logging.getLogger(__name__)

MADE_HEIGHT = 360  # lines of the made layer (a source no taller gets none)
# what it is encoded at: fits a lossy 1 Mbit/s link beside the sound (sent twice on a lossy
# link), its retransmissions and the probes that look for room to step up
MADE_BPS = 350_000
MIN_BPS = 150_000
SOURCE_SHARE = 0.4  # ... and never more than this share of what the source sends
KEYFRAME_INTERVAL_S = 3.0  # a keyframe at least this often (a classroom joining or repaired)
# A keyframe a classroom asks for comes at most this often after the last one: on a lossy
# link every keyframe is a burst that queues, loses packets and makes the classroom ask again.
FORCED_KEYFRAME_MIN_S = 1.0
# The encoder's rate buffer, in seconds of its bitrate: what one frame (a keyframe) may take.
VBV_S = 0.5
REORDER_PACKETS = 64  # a packet this far behind the newest one is taken as lost
VIDEO_CLOCK = 90_000
_ENCODER = {"H264": "libx264", "VP8": "libvpx"}
_DECODER = {"H264": "h264", "VP8": "vp8"}


def made_size(width: int, height: int, max_height: int = MADE_HEIGHT) -> tuple[int, int] | None:
    """The picture size of the layer made from a ``width``×``height`` source: at most
    ``max_height`` lines, the same aspect ratio, even sides; None when the source is no taller
    (nothing lighter to make by scaling)."""
    if width <= 0 or height <= max_height:
        return None
    out_width = max(2, round(width * max_height / height / 2) * 2)
    return out_width, max_height - max_height % 2


def made_bitrate(source_bps: float) -> int:
    """What the made layer is encoded at, for a source that sends ``source_bps``."""
    if source_bps <= 0:
        return MADE_BPS
    return int(max(MIN_BPS, min(MADE_BPS, source_bps * SOURCE_SHARE)))


@dataclass
class MadeOutput:
    """What one call of ``LayerMaker.push`` made: RTP packets of the made layer, and once
    known, the source's picture size (a codec whose packets do not tell it: H.264)."""

    packets: list[bytes] = field(default_factory=list)
    source_size: tuple[int, int] | None = None
    made_size: tuple[int, int] | None = None  # the made layer's, once its encoder is opened
    too_small: bool = False  # the source is no taller than the made layer would be
    need_keyframe: bool = False  # a frame of the source was lost: wait for its next keyframe


class SequenceUnwrapper:
    """16-bit RTP sequence numbers extended past their wrap, for packets in any order."""

    def __init__(self) -> None:
        self._highest: int | None = None

    def extend(self, seq: int) -> int:
        highest = self._highest
        if highest is None:
            self._highest = seq
            return seq
        delta = (seq - highest) & 0xFFFF
        extended = highest + delta if delta < 0x8000 else highest + delta - 0x10000
        if extended > highest:
            self._highest = extended
        return extended


class Reorder:
    """Puts a source's packets back in sequence order (retransmissions come late), holding at
    most ``REORDER_PACKETS`` behind the newest; a packet still missing then is skipped (its
    frame cannot be rebuilt: the framer waits for the next keyframe)."""

    def __init__(self) -> None:
        self._unwrap = SequenceUnwrapper()
        self._held: dict[int, tuple[int, bool, bytes]] = {}
        self._next: int | None = None
        self.gaps = 0  # packets given up on

    def reset(self) -> None:
        self._held.clear()
        self._next = None

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes) -> list[Any]:
        """The packets now in order, as depacketizer items."""
        extended = self._unwrap.extend(seq)
        if self._next is None:
            self._next = extended
        if extended < self._next or extended in self._held:
            return []  # too late, or a duplicate
        self._held[extended] = (timestamp, marker, payload)
        out = []
        held = self._held
        while True:
            item = held.pop(self._next, None)
            if item is None:
                if not held or max(held) - self._next < REORDER_PACKETS:
                    break
                first = min(held)  # give up on the gap
                self.gaps += first - self._next
                self._next = first
                continue
            out.append((self._next, item[0], item[1], item[2]))
            self._next += 1
        return out


def vp8_packets(
    frame: bytes, picture_id: int, max_payload: int = MAX_PAYLOAD
) -> list[tuple[bytes, bool]]:
    """The payloads of one VP8 frame (RFC 7741: a 15-bit picture id, S on the first), each
    with whether it is the frame's last."""
    room = max_payload - 4
    chunks = [frame[pos : pos + room] for pos in range(0, len(frame), room)] or [b""]
    out = []
    for index, chunk in enumerate(chunks):
        descriptor = bytes(
            (0x90 if index == 0 else 0x80, 0x80, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF)
        )
        out.append((descriptor + chunk, index == len(chunks) - 1))
    return out


def with_send_time(packet: bytes, extension_id: int) -> bytes:
    """``packet`` (a plain RTP header, no extension) with a zeroed abs-send-time element: the
    server stamps it as the packet leaves, as it does the publishers' packets."""
    if not extension_id:
        return packet
    element = bytes(((extension_id << 4) | 2, 0, 0, 0))
    return bytes((packet[0] | 0x10,)) + packet[1:12] + b"\xbe\xde\x00\x01" + element + packet[12:]


class LayerMaker:
    """One made layer's decoder and encoder. ``codec``: the source's (``H264`` or ``VP8``);
    ``payload_type``: the source's, which the made stream shares; ``send_time_id``: the
    source's abs-send-time extension id (0: none)."""

    def __init__(
        self,
        codec: str,
        payload_type: int,
        bitrate: int = MADE_BPS,
        send_time_id: int = 0,
        max_height: int = MADE_HEIGHT,
        ssrc: int | None = None,
    ) -> None:
        if codec not in _ENCODER:
            raise ValueError(f"no layer can be made from {codec}")
        self.codec = codec
        self.payload_type = payload_type
        self.bitrate = bitrate
        self.send_time_id = send_time_id
        self.max_height = max_height
        self.ssrc = random.getrandbits(32) if ssrc is None else ssrc
        self.frames_in = 0  # source frames decoded
        self.frames_out = 0  # made frames encoded
        self.keyframes_out = 0
        self._framer = Framer(codec)
        self._reorder = Reorder()
        self._decoder: Any = av.CodecContext.create(_DECODER[codec], "r")
        self._decoder.thread_count = 1  # frame threads would hold pictures back
        self._encoder: Any = None
        self._size: tuple[int, int] | None = None  # the source's
        self._made_size: tuple[int, int] | None = None
        self._last_ts: int | None = None  # of the newest frame encoded
        self._pts = 0  # ... as the encoder's pts (from 0 at the first)
        self._last_keyframe_ts: float = float("-inf")
        self._keyframe_asked = False
        self._h264 = H264Packetizer(self.ssrc, payload_type) if codec == "H264" else None
        if self._h264 is not None:
            self._h264.sequence_number = random.randrange(0x8000)
        self._sequence_number = random.randrange(0x8000)
        self._picture_id = random.randrange(0x8000)
        self.too_small = False

    def ask_keyframe(self) -> None:
        """A classroom fed this layer asks for a keyframe (made at the next frame, throttled)."""
        self._keyframe_asked = True

    def resync(self) -> None:
        """Packets of the source were dropped before they got here: start again at its next
        keyframe."""
        self._framer = Framer(self.codec)
        self._reorder.reset()

    def push(self, items: list[tuple[int, int, bool, bytes]]) -> MadeOutput:
        """Source packets (sequence number, timestamp, marker, payload) in arrival order."""
        out = MadeOutput()
        gaps = self._reorder.gaps
        for seq, timestamp, marker, payload in items:
            for item in self._reorder.push(seq, timestamp, marker, payload):
                frames = self._framer.push([item])
                if item[2]:  # the marker: the frame is whole now, not at the next one's start
                    frames += self._framer.end()
                for frame in frames:
                    self._decode(frame.data, frame.timestamp, out)
                    if self.too_small:
                        out.too_small = True
                        return out
        if self._reorder.gaps != gaps:
            out.need_keyframe = True
        return out

    def _decode(self, data: bytes, timestamp: int, out: MadeOutput) -> None:
        try:
            pictures = self._decoder.decode(av.Packet(data))
        except (av.error.FFmpegError, ValueError):
            out.need_keyframe = True
            self.resync()
            return
        for picture in pictures:
            self.frames_in += 1
            size = (picture.width, picture.height)
            if size != self._size:
                self._size = out.source_size = size
                if not self._open_encoder(*size):
                    return
                out.made_size = self._made_size
            self._encode(picture, timestamp, out)

    def _open_encoder(self, width: int, height: int) -> bool:
        made = made_size(width, height, self.max_height)
        if made is None:
            self.too_small = True
            return False
        encoder: Any = av.CodecContext.create(_ENCODER[self.codec], "w")
        encoder.width, encoder.height = made
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        encoder.framerate = fractions.Fraction(30, 1)
        encoder.bit_rate = self.bitrate
        encoder.thread_count = 1  # one layer's encoder takes one core at most
        kbps = self.bitrate // 1000
        if self.codec == "H264":
            encoder.options = {
                "preset": "veryfast",
                "tune": "zerolatency",
                "profile": "baseline",
                "level": "3.1",
                # parameter sets in-band before each IDR; keyframes when this layer says so
                "x264-params": f"keyint=600:min-keyint=600:scenecut=0:bframes=0:"
                f"vbv-maxrate={kbps}:vbv-bufsize={int(kbps * VBV_S)}:repeat-headers=1",
            }
        else:
            encoder.gop_size = 600
            encoder.options = {
                "deadline": "realtime",
                "cpu-used": "8",
                "lag-in-frames": "0",
                "error-resilient": "1",
                "maxrate": str(self.bitrate),
                "bufsize": str(int(self.bitrate * VBV_S)),
            }
        encoder.open()
        self._encoder = encoder
        self._made_size = made
        self._last_keyframe_ts = float("-inf")  # a new encoder starts with one anyway
        return True

    def _encode(self, picture: Any, timestamp: int, out: MadeOutput) -> None:
        encoder = self._encoder
        if encoder is None:
            return
        # the encoder's pts: the source's timestamps, extended past their wrap
        if self._last_ts is None:
            pts = 0
        else:
            delta = (timestamp - self._last_ts) & 0xFFFFFFFF
            if delta == 0 or delta >= 0x80000000:
                return  # no later than the frame before: left out
            pts = self._pts + delta
        self._last_ts, self._pts = timestamp, pts
        scaled = picture.reformat(encoder.width, encoder.height, "yuv420p")
        scaled.pts = pts
        scaled.time_base = encoder.time_base
        since = (pts - self._last_keyframe_ts) / VIDEO_CLOCK
        asked = self._keyframe_asked and (pts - self._last_keyframe_ts) / VIDEO_CLOCK >= (
            FORCED_KEYFRAME_MIN_S
        )
        if since >= KEYFRAME_INTERVAL_S or asked:
            scaled.pict_type = av.video.frame.PictureType.I
            self._keyframe_asked = False  # answered by this one
        else:
            # the decoded picture keeps the source's picture type, which the encoder would
            # obey: a keyframe, a burst on the classrooms' narrow links, at each of the source's
            scaled.pict_type = av.video.frame.PictureType.NONE
        try:
            packets = encoder.encode(scaled)
        except (av.error.FFmpegError, ValueError):
            logger.warning("made layer: the encoder refused a frame", exc_info=True)
            return
        for packet in packets:
            self._packetize(bytes(packet), timestamp, bool(packet.is_keyframe), pts, out)

    def _packetize(
        self, data: bytes, timestamp: int, keyframe: bool, pts: int, out: MadeOutput
    ) -> None:
        self.frames_out += 1
        if keyframe:
            self.keyframes_out += 1
            self._last_keyframe_ts = pts
        if self._h264 is not None:
            packets, _ = self._h264.packetize(data, timestamp)
        else:
            packets = []
            for payload, last in vp8_packets(data, self._picture_id):
                packets.append(self._header(timestamp, last) + payload)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        out.packets.extend(with_send_time(p, self.send_time_id) for p in packets)

    def _header(self, timestamp: int, marker: bool) -> bytes:
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | self.payload_type,
            self._sequence_number,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        self._sequence_number = (self._sequence_number + 1) & 0xFFFF
        return header

    def close(self) -> None:
        """Free the codecs (the thread ends with this)."""
        self._decoder = None
        self._encoder = None
