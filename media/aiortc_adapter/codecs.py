"""Negotiated aiortc codec parameters as media.codec.Codec, and the answer's codecs narrowed to
those the SFU forwards.

Hook: aiortc's ``RTCRtpTransceiver._codecs`` (what the answer offers, filtered in place).
"""

from __future__ import annotations

from aiortc import RTCRtpCodecParameters, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

from ..codec import Codec


def codecs_of(parameters: list[RTCRtpCodecParameters]) -> list[Codec]:
    """The media codecs among ``parameters``, each with the payload type of its RTX if any."""
    rtx = {
        c.parameters.get("apt"): c.payloadType
        for c in parameters
        if c.mimeType.lower().endswith("/rtx")
    }
    return [
        Codec(
            mime_type=c.mimeType,
            clock_rate=c.clockRate,
            payload_type=c.payloadType,  # type: ignore[arg-type]  # set once negotiated
            channels=c.channels,
            parameters=dict(c.parameters),
            rtx_payload_type=rtx.get(c.payloadType),
        )
        for c in parameters
        if not c.mimeType.lower().endswith("/rtx")
    ]


def restrict_codecs(transceiver: RTCRtpTransceiver, mime_types: tuple[str, ...]) -> list[Codec]:
    """Keep only ``mime_types`` (and their RTX) in what the answer will accept; returns them.

    aiortc fixes the common codecs in setRemoteDescription, before an answerer could set
    preferences, so they are filtered afterwards (``transceiver._codecs``)."""
    kept = [c for c in transceiver._codecs if c.mimeType.lower() in mime_types]
    if not kept:
        # left as offered: an answer section without any codec is not SDP (the caller
        # refuses the offer or makes the section inactive)
        return []
    media_types = {c.payloadType for c in kept}
    kept += [
        c
        for c in transceiver._codecs
        if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") in media_types
    ]
    for codec in kept:
        if codec.mimeType.lower() == "audio/opus":
            # Opus in-band FEC end to end: the teacher's encoder adds it when the answer asks
            # and its receiver reports tell loss (RFC 7587); classrooms get it forwarded
            codec.parameters["useinbandfec"] = 1
    transceiver._codecs = kept
    return codecs_of(kept)


def accept_red(transceiver: RTCRtpTransceiver, offered: list[RTCRtpCodecParameters]) -> list[Codec]:
    """Also answer redundant sound (``audio/red``, RFC 2198) where the offer has it over the
    Opus kept (aiortc knows no RED and drops it from the answer): the consumer sends it while
    the classroom's link loses sound (media.red). Returns the answer's codecs."""
    opus = next((c for c in transceiver._codecs if c.mimeType.lower() == "audio/opus"), None)
    if opus is not None:
        wanted = str(opus.payloadType)
        for codec in offered:
            formats = str(next(iter(codec.parameters), ""))
            if codec.mimeType.lower() == "audio/red" and formats:
                if all(f == wanted for f in formats.split("/")):
                    transceiver._codecs = [*transceiver._codecs, codec]
                    break
    return codecs_of(transceiver._codecs)


def accept_header_extensions(transceiver: RTCRtpTransceiver, offered: dict[str, int]) -> None:
    """Also answer the header extensions ``offered`` (uri -> the offer's id) that aiortc does
    not know, e.g. the simulcast rid ones (``transceiver._headerExtensions``)."""
    known = {e.uri for e in transceiver._headerExtensions}
    used = {e.id for e in transceiver._headerExtensions}
    transceiver._headerExtensions = [
        *transceiver._headerExtensions,
        *(
            RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri)
            for uri, ext_id in offered.items()
            if uri not in known and ext_id not in used
        ),
    ]
