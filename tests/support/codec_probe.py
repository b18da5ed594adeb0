"""Records every decoder and encoder aiortc or PyAV creates in this process.

Imported first thing in a server process (``start_server(prelude=...)``): the file named by
SYNCCLASS_CODEC_PROBE then gets one line per codec created, so a test can show the SFU
forwarded media without decoding or encoding any of it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import av

_installed: set[str] = set()


def _record(path: str, what: str) -> None:
    with open(path, "a") as f:
        f.write(what + "\n")


def install(path: str) -> None:
    if path in _installed:
        return
    _installed.add(path)
    original_context = av.CodecContext

    class RecordingCodecContext(original_context):  # type: ignore[misc, valid-type]
        @staticmethod
        def create(codec: Any, mode: str | None = None, *args: Any, **kwargs: Any) -> Any:
            _record(path, f"CodecContext.create {codec} {mode}")
            return original_context.create(codec, mode, *args, **kwargs)

    av.CodecContext = RecordingCodecContext  # before aiortc imports it by name

    import aiortc.codecs
    import aiortc.rtcrtpreceiver
    import aiortc.rtcrtpsender

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def recording(codec: Any, *args: Any, **kwargs: Any) -> Any:
            _record(path, f"{name} {getattr(codec, 'mimeType', codec)}")
            return function(codec, *args, **kwargs)

        return recording

    for name in ("get_decoder", "get_encoder"):
        recording = wrap(name, getattr(aiortc.codecs, name))
        for module in (aiortc.codecs, aiortc.rtcrtpreceiver, aiortc.rtcrtpsender):
            if hasattr(module, name):
                setattr(module, name, recording)


if os.environ.get("SYNCCLASS_CODEC_PROBE"):
    install(os.environ["SYNCCLASS_CODEC_PROBE"])
