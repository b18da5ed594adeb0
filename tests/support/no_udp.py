"""A school whose firewall lets no UDP out, for one browser of a test: Chromium runs as the
user nobody (``chromium_as_nobody``), and an nftables rule of the test's private network
namespace drops every UDP datagram that user's sockets send. Every other peer of the test
(the server, aiortc clients, other browsers run as root) keeps UDP.

A dropped datagram fails its ``sendto`` at once, so the browser's ICE agent finds no UDP
pair quickly; TCP to the same addresses works.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534
CHROMIUM_AS_NOBODY = str(Path(__file__).with_name("chromium_as_nobody"))
_TABLE = "syncclass_no_udp"


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)


@contextmanager
def udp_blocked_for_nobody() -> Iterator[str]:
    """Drop the UDP that nobody's sockets send while inside; yields the Chromium executable
    to launch as nobody."""
    _nft(
        f"""
        table inet {_TABLE} {{
            chain out {{
                type filter hook output priority 0; policy accept;
                meta skuid {NOBODY} meta l4proto udp counter drop
            }}
        }}
        """
    )
    try:
        yield CHROMIUM_AS_NOBODY
    finally:
        _nft(f"delete table inet {_TABLE}")


def udp_dropped() -> int:
    """UDP datagrams the rule dropped so far."""
    listing = subprocess.run(
        ["nft", "list", "table", "inet", _TABLE], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"counter packets (\d+)", listing)
    return int(match.group(1)) if match else 0
