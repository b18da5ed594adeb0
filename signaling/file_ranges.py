"""Files served with HTTP range requests (RFC 9110 §14), where aiohttp's FileResponse strays
from it: a range in a unit other than bytes is ignored (the whole file, 200), not refused with
416; a zero-length suffix (``bytes=-0``) selects nothing, so it is 416, not the whole file."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

_ZERO_SUFFIX = re.compile(r"^-0+$", re.ASCII)


class RangeFileResponse(web.FileResponse):
    def __init__(self, path: Path, headers: dict[str, str] | None = None) -> None:
        super().__init__(path, headers=headers)
        self._file = path

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        header = request.headers.get(hdrs.RANGE)
        if header is None:
            return await super().prepare(request)
        unit, equals, spec = header.partition("=")
        if not equals or unit.strip().lower() != "bytes":
            # §14.2: a server ignores a Range header field with a range unit it does not know
            headers = CIMultiDict(request.headers)
            del headers[hdrs.RANGE]
            return await super().prepare(request.clone(headers=headers))
        if _ZERO_SUFFIX.match(spec.strip()):
            try:
                st = await asyncio.to_thread(self._file.stat)
            except OSError:
                return await super().prepare(request)  # 404 or 403, as FileResponse says
            if_range = request.if_range
            if if_range is None or st.st_mtime <= if_range.timestamp():
                # §14.1.1: a suffix of length zero is unsatisfiable
                self.set_status(416)
                self._headers[hdrs.CONTENT_RANGE] = f"bytes */{st.st_size}"
                self.content_length = 0
                return await web.StreamResponse.prepare(self, request)
        return await super().prepare(request)
