"""Where the server's log lines go, and how long they are kept.

By default they go to standard error, where systemd's journal or the container runtime
keeps them for as long as the operator has set there. With ``--log-file`` they go to that
file, which starts afresh at local midnight; the previous days are kept as ``FILE.YYYY-MM-DD``
for ``--log-retain-days`` days and then deleted. China's Cybersecurity Law (Art. 21) asks that
network logs be kept for at least six months, hence the default of 180 days.
"""

from __future__ import annotations

import logging
import logging.handlers

from .config import Config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(config: Config) -> logging.Handler:
    """Send every log line to the configured place; returns the handler that writes them."""
    handler: logging.Handler
    if config.log_file is None:
        handler = logging.StreamHandler()
    else:
        config.log_file.parent.mkdir(parents=True, exist_ok=True)
        # a server that was off over midnight rolls over on its first line, so a school PC
        # switched off every night still gets one file per day and loses old ones on time
        handler = logging.handlers.TimedRotatingFileHandler(
            config.log_file,
            when="midnight",
            backupCount=config.log_retain_days,
            encoding="utf-8",
        )
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(config.log_level.upper())
    # aioice logs every connectivity check at INFO; the peer events we log ourselves suffice
    logging.getLogger("aioice").setLevel(max(logging.WARNING, root.level))
    return handler
