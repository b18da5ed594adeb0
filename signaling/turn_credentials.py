"""Short-lived TURN credentials for a lesson's tokens (the TURN REST scheme coturn checks with
``use-auth-secret``), and the forms they are handed out in: WHIP/WHEP ``Link`` headers
(RFC 9725) and the ``iceServers`` of a page.

The username is ``"<expiry-unix>:<label>"``, the password base64(HMAC-SHA1(secret, username)).
coturn needs nothing but the shared secret to check one, and refuses it once the expiry has
passed; the expiry is the token's, so a credential never outlives the link it came with. The
label names the lesson and the role, never a classroom or a person.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .contracts import Grant

# RFC 7065 host: a DNS name, an IPv4 address or a bracketed IPv6 address
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


class TurnUrlError(ValueError):
    """A TURN server URL that browsers and WHIP clients could not use."""


def parse_turn_url(text: str) -> str:
    """``text`` as a TURN URL (RFC 7065): ``turn:HOST[:PORT][?transport=udp|tcp]`` or
    ``turns:HOST[:PORT][?transport=tcp]``; returned as given, stripped."""
    url = text.strip()
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in ("turn", "turns"):
        raise TurnUrlError(f"{url!r} is not a turn: or turns: URL (e.g. turns:turn.example:443)")
    if rest.startswith("//"):
        raise TurnUrlError(f"{url!r}: write turn:HOST[:PORT], without //")
    hostport, _, query = rest.partition("?")
    if hostport.startswith("["):
        literal = hostport[1:].partition("]")[0]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise TurnUrlError(f"{url!r}: {literal!r} is not an IPv6 address") from None
    try:
        parsed = urlsplit(f"//{hostport}")
        port = parsed.port
    except ValueError:
        raise TurnUrlError(f"{url!r}: the port must be a number from 1 to 65535") from None
    host = parsed.hostname
    if not host or parsed.username is not None or parsed.path:
        raise TurnUrlError(f"{url!r}: expected {scheme}:HOST[:PORT]")
    if port == 0:
        raise TurnUrlError(f"{url!r}: the port must be a number from 1 to 65535")
    if not hostport.startswith("[") and not _HOSTNAME.match(host):
        raise TurnUrlError(f"{url!r}: {host!r} is not a host name or address")
    if query:
        key, _, transport = query.partition("=")
        if key != "transport" or transport not in ("udp", "tcp"):
            raise TurnUrlError(f"{url!r}: the only query allowed is ?transport=udp or tcp")
        if scheme.lower() == "turns" and transport != "tcp":
            raise TurnUrlError(f"{url!r}: turns: (TURN over TLS) runs over TCP only")
    return url


@dataclass(frozen=True)
class TurnCredential:
    """One username and password for every configured TURN URL, valid until ``expires_at``."""

    urls: tuple[str, ...]
    username: str
    password: str
    expires_at: int

    def link_headers(self) -> list[str]:
        """One ``Link`` header value per URL, as RFC 9725 §4.6 writes them."""
        return [
            f'<{url}>; rel="ice-server"; username="{self.username}"; '
            f'credential="{self.password}"; credential-type="password"'
            for url in self.urls
        ]

    def ice_server(self) -> dict[str, object]:
        """The credential as a page passes it to ``RTCPeerConnection({iceServers})``."""
        return {"urls": list(self.urls), "username": self.username, "credential": self.password}


def turn_password(secret: str, username: str) -> str:
    """The TURN REST password of ``username``: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class TurnCredentials:
    """Mints the TURN credentials of lesson tokens for the configured TURN servers."""

    def __init__(self, urls: tuple[str, ...], secret: str) -> None:
        if not urls:
            raise ValueError("at least one TURN URL is needed")
        if not secret:
            raise ValueError("the TURN secret must not be empty")
        self.urls = tuple(parse_turn_url(url) for url in urls)
        self._secret = secret

    def for_grant(self, grant: Grant) -> TurnCredential:
        """A credential that expires with ``grant``'s token."""
        return self.mint(grant.lesson_id, grant.role.value, grant.expires_at)

    def mint(self, lesson_id: str, role: str, expires_at: float) -> TurnCredential:
        expiry = math.floor(expires_at)
        username = f"{expiry}:{lesson_id}.{role}"
        return TurnCredential(self.urls, username, turn_password(self._secret, username), expiry)
