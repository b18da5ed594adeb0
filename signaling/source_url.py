"""Where a lesson's camera is pulled from, as given in ``source_url``, checked at the edge and
never shown with its secret (``str`` and ``repr`` mask it):

- a camera: ``rtsp://user:password@host:port/path``;
- another syncclass server's lesson (this server is then its edge):
  ``http(s)://name:token@host:port/whep/<lesson>``, the origin's WHEP URL with a classroom
  token of that lesson as the password and the name this server goes by among the origin's
  classrooms as the user."""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_to_bytes, urlsplit

MAX_SOURCE_URL = 1024
MAX_USER = 128
MAX_PASSWORD = 256
RTSP_SCHEMES = ("rtsp", "rtsps")
WHEP_SCHEMES = ("http", "https")
SCHEMES = RTSP_SCHEMES + WHEP_SCHEMES
MASK = "***"
# the origin's WHEP endpoint: /whep/<lesson id>, under any prefix a reverse proxy adds
_WHEP_PATH = re.compile(r"(?:/[^/?#]+)*/whep/([A-Za-z0-9_-]{1,64})/?")

# RFC 3986 userinfo: unreserved, sub-delims, ':' and percent-encoded octets
_USERINFO = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


class SourceUrlError(ValueError):
    """Why a source URL is refused, in words for the 400 answer (never with the password)."""


class SourceUrl:
    """A checked source URL. ``reveal()`` gives the whole of it, for the media layer only."""

    __slots__ = ("_url", "user", "password", "_at", "kind")

    def __init__(self, text: object) -> None:
        if not isinstance(text, str):
            raise SourceUrlError("source_url must be a string (or null for none)")
        if len(text) > MAX_SOURCE_URL:
            raise SourceUrlError(f"source_url must be at most {MAX_SOURCE_URL} characters")
        if not _PRINTABLE_ASCII.fullmatch(text):
            raise SourceUrlError(
                "source_url must be printable ASCII without spaces: percent-encode other "
                "characters (a space is %20)"
            )
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise SourceUrlError(
                "source_url must be a camera's rtsp:// (or rtsps://) address, or another "
                "server's lesson as http(s)://name:token@host:port/whep/<lesson>"
            )
        if parts.fragment:
            raise SourceUrlError("source_url must not have a #fragment")
        userinfo, at, _ = parts.netloc.rpartition("@")
        if "@" in userinfo:
            raise SourceUrlError("an @ in the user name or password must be written %40")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise SourceUrlError("source_url has an invalid port") from None
        if not host:
            raise SourceUrlError("source_url must name the camera's host")
        del port
        user, colon, password = userinfo.partition(":")
        if at and not user:
            raise SourceUrlError("source_url has credentials without a user name")
        for name, value, limit in (("user name", user, MAX_USER), ("password", password, 256)):
            if not _USERINFO.fullmatch(value):
                raise SourceUrlError(
                    f"the {name} may hold letters, digits and -._~!$&'()*+,;=: only; "
                    "percent-encode any other character (e.g. / as %2F, % as %25)"
                )
            decoded = unquote_to_bytes(value)
            if len(decoded) > limit:
                raise SourceUrlError(f"the {name} must be at most {limit} bytes")
            if any(b < 0x20 or b == 0x7F for b in decoded):
                raise SourceUrlError(f"the {name} must not hold control characters")
        if scheme in WHEP_SCHEMES:
            _check_whep(parts.path, parts.query, user, password if colon else None)
        self.kind = "whep" if scheme in WHEP_SCHEMES else "rtsp"
        self._url = text
        self.user = user
        self.password = password if colon else None
        self._at = len(parts.scheme) + 3 + len(userinfo)  # where userinfo ends in the text

    @classmethod
    def stored(cls, without_password: str, password: str | None) -> SourceUrl:
        """The URL kept as its text without the password, and the password on its own."""
        if password is None:
            return cls(without_password)
        scheme, rest = without_password.split("://", 1)
        user, _, host = rest.partition("@")
        return cls(f"{scheme}://{user}:{password}@{host}")

    def reveal(self) -> str:
        return self._url

    def whep(self) -> tuple[str, str, str]:
        """An origin's lesson: (its WHEP endpoint without credentials, the name to join its
        lesson under, the token), for the media layer only."""
        if self.kind != "whep" or self.password is None:
            raise ValueError("not a WHEP source")
        scheme, rest = self._url.split("://", 1)
        endpoint = f"{scheme}://{rest[self._at - len(scheme) - 3 + 1 :]}"
        return endpoint, unquote(self.user), unquote(self.password)

    @property
    def without_password(self) -> str:
        if self.password is None:
            return self._url
        end = self._at
        return self._url[: end - len(self.password) - 1] + self._url[end:]

    @property
    def masked(self) -> str:
        if self.password is None:
            return self._url
        end = self._at
        return self._url[: end - len(self.password)] + MASK + self._url[end:]

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"SourceUrl({self.masked!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


def _check_whep(path: str, query: str, user: str, password: str | None) -> None:
    """An origin's WHEP URL: its endpoint's path, with a name and a token and nothing else."""
    example = "http(s)://name:token@host:port/whep/<lesson>"
    if not _WHEP_PATH.fullmatch(path):
        raise SourceUrlError(
            "source_url must be a camera's rtsp:// address, or another server's WHEP URL, "
            f"{example}: this one's path does not end in /whep/ and a lesson's id"
        )
    if query:
        raise SourceUrlError(
            f"the WHEP source_url takes no query: the token goes in as the password, {example}"
        )
    if not password:
        raise SourceUrlError(
            f"the WHEP source_url needs a classroom token of the origin's lesson as its "
            f"password, {example}"
        )
    name = unquote(user).strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise SourceUrlError(
            f"the WHEP source_url's user is the name this server joins the origin's lesson "
            f"under: 1 to 64 printable characters, {example}"
        )
