"""The aiortc, aioice and pylibsrtp versions the hooks were written for, and a warning if others
are installed."""

from __future__ import annotations

import logging

import aioice
import aiortc
import pylibsrtp

logger = logging.getLogger(__name__)

PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0", "pylibsrtp": "1.0.0"}
INSTALLED = {
    "aiortc": aiortc.__version__,
    "aioice": aioice.__version__,
    "pylibsrtp": pylibsrtp.__version__,
}


def versions_match() -> bool:
    return INSTALLED == PINNED


if not versions_match():  # pragma: no cover - depends on the environment
    logger.warning("aiortc/aioice/pylibsrtp %s differ from the pinned %s", INSTALLED, PINNED)
