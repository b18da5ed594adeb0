"""python -m bench <name> [options]: run one benchmark (inside scripts/bench's namespace)."""

from __future__ import annotations

import socket
import sys

BENCHMARKS = {
    "catch-up": "bench.catch_up",
    "edge": "bench.edge",
    "fanout": "bench.fanout",
    "hardening": "bench.hardening",
    "hotpath": "bench.hotpath",
    "made-layer": "bench.made_layer",
    "recorder": "bench.recorder_cpu",
    "school-sources": "bench.school_sources",
    "transports": "bench.transports",
    "soak": "bench.soak",
    "uplink": "bench.uplink",
    "weak-links": "bench.weak_links",
    "weak-link-pages": "bench.weak_link_pages",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        sys.exit(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [options]")
    if any(name != "lo" for _, name in socket.if_nameindex()):
        sys.exit("benchmarks send packets: run them through scripts/bench (private namespace)")
    import importlib

    importlib.import_module(BENCHMARKS[sys.argv[1]]).main(sys.argv[2:])


main()
