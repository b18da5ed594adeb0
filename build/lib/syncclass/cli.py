"""The command line: ``syncclass serve`` runs the server."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import ssl
import sys

from aiohttp import web

from .app import create_app, teacher_key
from .config import Config, add_serve_arguments, resolve_serve_config

logger = logging.getLogger("syncclass")


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def _banner(config: Config, key: str, created: bool, tls: bool) -> None:
    scheme = "https" if tls else "http"
    host = config.host if config.host not in ("0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    origin = (
        "from --teacher-key"
        if config.teacher_key
        else (
            f"new, kept in {config.data_dir / 'teacher.key'}"
            if created
            else f"kept in {config.data_dir / 'teacher.key'}"
        )
    )
    print(f"syncclass: open {scheme}://{host}:{config.port}/", flush=True)
    print(f"syncclass: teacher key ({origin}): {key}", flush=True)
    if not config.ice_bind:
        print(
            "syncclass: ICE candidates on every non-loopback address (see --ice-bind)", flush=True
        )


def serve(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aioice logs every connectivity check at INFO; the peer events we log ourselves suffice
    logging.getLogger("aioice").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional at run time
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    tls = _ssl_context(config)
    key, created = teacher_key(config)
    _banner(config, key, created, tls is not None)
    app = create_app(dataclasses.replace(config, teacher_key=key))
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        ssl_context=tls,
        print=None,
        access_log=None,
        shutdown_timeout=5,
        loop=loop,
    )
    logger.info("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="syncclass", description="Live classroom streaming server"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the server")
    add_serve_arguments(serve_parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        serve(resolve_serve_config(serve_parser, args, os.environ))
