"""The HTTP access log, with credentials taken out.

Lesson tokens travel in URLs (``?token=``) wherever a browser cannot send a header (links,
WebSockets, media elements), and aiohttp's own access log prints the whole request line; a
log file is read by more people than may hold the tokens, so their values never reach it.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlencode

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

# query parameters whose values are credentials; compared without case
SECRET_PARAMETERS = frozenset({"token", "key", "access_token", "authorization"})
REDACTED = "[redacted]"


def redacted_target(request: BaseRequest) -> str:
    """The request's path and query, with every credential's value replaced."""
    url = request.rel_url
    if not url.query:
        return url.raw_path
    # the parsed query, not the raw string: "%74oken=" is a token to the server, so it is one
    # here too
    pairs = [
        (name, REDACTED if name.casefold() in SECRET_PARAMETERS else value)
        for name, value in url.query.items()
    ]
    return f"{url.raw_path}?{urlencode(pairs, safe='[]', quote_via=quote)}"


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: client, method, path and query (credentials redacted), status,
    body size, time taken. Headers are not logged at all (Authorization, Referer)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fs',
            request.remote,
            request.method,
            redacted_target(request),
            response.status,
            response.body_length,
            time,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
