"""A first look at an SDP offer: enough to refuse bad ones with a message a person can act on.

aiortc's own parser is the authority; this check runs before it so that a malformed or
unusable offer is answered with what is wrong instead of a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_OFFER_BYTES = 64 * 1024
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
KINDS = ("audio", "video", "application")

# What one media section may hold. aiortc's work (and memory) for an offer grows with each
# of these, and a 64 KiB offer could otherwise carry hundreds of sections or thousands of
# codecs. Real offers stay far below: Chrome's video section lists ~20 codecs (rtpmap) and
# ~15 header extensions, and ~150 attribute lines with its candidates; Firefox, OBS and
# FFmpeg offer fewer.
MAX_CODECS = 64  # a=rtpmap lines per section (payload types are 0..127 anyway)
MAX_EXTENSIONS = 32  # a=extmap lines per section
MAX_ATTRIBUTES = 512  # a= lines per section, and at session level


AV = ("audio", "video")


class OfferError(ValueError):
    """The offer cannot be used; the message says why, and ``code`` is the error's short
    name for the API."""

    def __init__(self, message: str, code: str = "malformed_sdp") -> None:
        super().__init__(message)
        self.code = code


def _too_complex(message: str) -> OfferError:
    return OfferError(message, "offer_too_complex")


@dataclass
class OfferedMedia:
    kind: str
    direction: str
    codecs: list[str] = field(default_factory=list)  # encoding names from a=rtpmap

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def describe_offer(sdp: str, sections: Mapping[str, int] | None = None) -> list[OfferedMedia]:
    """The offer's media sections, or an ``OfferError``. ``sections`` bounds how many
    sections of each kind the endpoint can use (a kind it does not name: none); the count
    is checked as the offer is read, so an offer of hundreds of sections costs no more to
    refuse than a small one."""
    if not sdp.strip():
        raise OfferError("the SDP offer is empty")
    if len(sdp.encode("utf-8", "replace")) > MAX_OFFER_BYTES:
        raise OfferError(f"the SDP offer is larger than {MAX_OFFER_BYTES} bytes")
    lines = [line.strip() for line in sdp.splitlines() if line.strip()]
    if lines[0] != "v=0":
        raise OfferError("the SDP offer must start with v=0")
    media: list[OfferedMedia] = []
    session_direction = "sendrecv"
    has_fingerprint = has_ufrag = False
    mids: list[str | None] = []  # each section's a=mid
    bundle: list[str] = []
    undirected: set[int] = set()  # sections without a direction of their own
    counts = {kind: 0 for kind in KINDS}
    attributes = extensions = 0  # in the current section (or at session level)
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise OfferError(f"malformed SDP line: {line[:60]!r}")
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) < 4 or not parts[1].split("/", 1)[0].isdigit():
                raise OfferError(f"malformed SDP media line: {line[:60]!r}")
            if parts[0] not in KINDS:
                # aiortc makes no transport for such a section, and one bundled onto it
                # would be left without any
                raise OfferError(
                    f"unsupported media section {parts[0][:20]!r} "
                    f"(a section is one of {', '.join(KINDS)})"
                )
            if parts[0] in ("audio", "video") and not all(f.isdigit() for f in parts[3:]):
                raise OfferError(f"malformed payload types in SDP media line: {line[:60]!r}")
            counts[parts[0]] += 1
            if sections is not None and counts[parts[0]] > sections.get(parts[0], 0):
                allowed = ", ".join(f"{n} {kind}" for kind, n in sections.items() if n)
                raise OfferError(
                    f"the SDP offer has more {parts[0]} sections than this endpoint can use "
                    f"(at most {allowed})",
                    "too_many_media_sections",
                )
            attributes = extensions = 0
            undirected.add(len(media))
            media.append(OfferedMedia(kind=parts[0], direction=session_direction))
            mids.append(None)
        elif line.startswith("a="):
            attribute = line[2:]
            attributes += 1
            if attributes > MAX_ATTRIBUTES:
                raise _too_complex(
                    f"an SDP section has more than {MAX_ATTRIBUTES} attribute lines (a=)"
                )
            if attribute.startswith("extmap:"):
                extensions += 1
                if extensions > MAX_EXTENSIONS:
                    raise _too_complex(
                        f"an SDP section offers more than {MAX_EXTENSIONS} header extensions"
                    )
            if attribute in DIRECTIONS:
                if media:
                    media[-1].direction = attribute
                    undirected.discard(len(media) - 1)
                else:
                    session_direction = attribute
            elif attribute.startswith("fingerprint:"):
                has_fingerprint = True
            elif attribute.startswith("ice-ufrag:"):
                has_ufrag = True
            elif attribute.startswith("mid:") and media:
                mid = attribute[4:].strip()
                # aiortc would take the last of several, or bundle two sections as one
                if mids[-1] is not None or mid in mids:
                    raise OfferError(f"a=mid:{mid[:40]} is not the one mid of one media section")
                mids[-1] = mid
            elif attribute.startswith("group:BUNDLE") and not media:
                bundle = attribute[12:].split()
            elif attribute.startswith("rtpmap:") and media:
                parts = attribute[7:].split()
                if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) > 127:
                    raise OfferError(f"malformed SDP rtpmap: {line[:60]!r}")
                if len(media[-1].codecs) >= MAX_CODECS:
                    raise _too_complex(f"an SDP section offers more than {MAX_CODECS} codecs")
                media[-1].codecs.append(parts[1].split("/", 1)[0])
    av = [m for m in media if m.kind in ("audio", "video")]
    if not av and not (media and sections is not None and not any(map(sections.get, AV))):
        # (an endpoint that takes no audio or video, the network check, takes a data channel)
        raise OfferError("the SDP offer has no audio or video section")
    if not has_fingerprint:
        raise OfferError("the SDP offer has no a=fingerprint (DTLS-SRTP is required)")
    if not has_ufrag:
        raise OfferError("the SDP offer has no a=ice-ufrag (ICE is required)")
    for index in sorted(undirected):  # aiortc reads no session-level direction
        if media[index].kind in ("audio", "video"):
            raise OfferError(
                f"the SDP offer's {media[index].kind} section has no direction "
                "(a=sendonly, a=recvonly, a=sendrecv or a=inactive)"
            )
    for mid in bundle:  # aiortc would bundle sections onto the transport of a missing one
        if mid not in mids:
            raise OfferError(f"a=group:BUNDLE names {mid[:40]!r}, which no media section has")
    return media
