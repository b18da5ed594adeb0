"""Negotiated codecs as the SFU sees them, and matching a producer's codec to a consumer's."""

from __future__ import annotations

from dataclasses import dataclass, field

SUPPORTED = ("video/vp8", "video/h264", "audio/opus")


@dataclass(frozen=True)
class Codec:
    mime_type: str  # e.g. "video/VP8"
    clock_rate: int
    payload_type: int
    channels: int | None = None
    parameters: dict[str, str | int | None] = field(default_factory=dict, hash=False)
    rtx_payload_type: int | None = None

    @property
    def kind(self) -> str:
        return self.mime_type.split("/", 1)[0].lower()

    @property
    def name(self) -> str:
        return self.mime_type.split("/", 1)[1].upper()


PER_LEG_EXTENSIONS = frozenset(
    {
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        # numbers the packets of the publisher's transport, for its congestion feedback
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    }
)


@dataclass(frozen=True)
class HeaderExtension:
    id: int
    uri: str


def _h264_profile(codec: Codec) -> str:
    # profile_idc + profile_iop: the level does not matter to a decoder that can do more
    return str(codec.parameters.get("profile-level-id", "42001f")).lower()[:4]


def _h264_mode(codec: Codec) -> int:
    return int(codec.parameters.get("packetization-mode") or 0)


def match_codec(source: Codec, offered: list[Codec]) -> Codec | None:
    """The consumer-side codec that can carry ``source``'s packets unchanged, if any."""
    candidates = [c for c in offered if c.mime_type.lower() == source.mime_type.lower()]
    if source.mime_type.lower() != "video/h264":
        return candidates[0] if candidates else None
    same_mode = [c for c in candidates if _h264_mode(c) == _h264_mode(source)]
    for codec in same_mode:
        if _h264_profile(codec) == _h264_profile(source):
            return codec
    # A decoder for another profile generally copes with constrained baseline, not the reverse;
    # still better than refusing the stream.
    return same_mode[0] if same_mode else None


def extension_id_map(ingress: list[HeaderExtension], egress: list[HeaderExtension]) -> bytes:
    """A 256-entry table from ingress extension ids to egress ids.

    Extensions whose value names an m-line of one leg (mid, rid) are never carried over: the
    classroom demultiplexes by the SSRC of its own answer instead. Extensions the consumer
    did not negotiate get an id it does not use, which its receiver
    ignores (RFC 8285); the bytes stay in place, so rewriting never moves the payload.
    """
    egress_by_uri = {ext.uri: ext.id for ext in egress if ext.uri not in PER_LEG_EXTENSIONS}
    used = {ext.id for ext in egress}
    spare = next((i for i in range(14, 0, -1) if i not in used), 14)
    table = bytearray([spare] * 256)
    table[0] = 0
    for ext in ingress:
        if 0 < ext.id < 256:
            table[ext.id] = egress_by_uri.get(ext.uri, spare)
    return bytes(table)
