"""The command line: ``syncclass serve`` runs the server; ``teacher`` and ``audit`` manage
accounts and read the audit log; ``course`` manages courses and their timetables."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import ssl
import sys
from pathlib import Path

from aiohttp import web

from . import admin_cli, certificate, course_cli, open_files
from .config import Config, add_serve_arguments, resolve_serve_config
from .data_dir import DataDirError, check_data_dir
from .logs import configure_logging
from .store import DamagedDatabaseError
from .tokens import ADMIN_KEY_FILE, TEACHER_KEY_FILE

logger = logging.getLogger("syncclass")


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def _key_origin(configured: str | None, flag: str, created: bool, path: Path) -> str:
    if configured:
        return f"from {flag}"
    return f"new, kept in {path}" if created else f"kept in {path}"


def _banner(config: Config, key: tuple[str, bool], admin: tuple[str, bool], tls: bool) -> None:
    scheme = "https" if tls else "http"
    host = config.host if config.host not in ("0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    teacher_origin = _key_origin(
        config.teacher_key, "--teacher-key", key[1], config.data_dir / TEACHER_KEY_FILE
    )
    admin_origin = _key_origin(
        config.admin_key, "--admin-key", admin[1], config.data_dir / ADMIN_KEY_FILE
    )
    print(f"syncclass: open {scheme}://{host}:{config.port}/", flush=True)
    print(f"syncclass: teacher key ({teacher_origin}): {key[0]}", flush=True)
    if admin[1]:  # shown once, when made: logs are read by more people than should hold it
        print(f"syncclass: admin key ({admin_origin}): {admin[0]}", flush=True)
    else:
        print(f"syncclass: admin key {admin_origin}", flush=True)
    if not config.ice_bind:
        print(
            "syncclass: ICE candidates on every non-loopback address (see --ice-bind)", flush=True
        )


def serve(config: Config) -> None:
    # the media stack takes a while to import; the account and audit commands do without it
    from .access_log import RedactingAccessLogger
    from .app import MediaPortError, admin_key, create_app, teacher_key

    configure_logging(config)
    # each classroom holds sockets (HTTP, events, media): let the server have all the system
    # allows, and say how many that is (after the banner, whose first line is the address)
    open_files_limit = open_files.raise_limit()
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional at run time
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if config.self_signed:
        config, digest, made = certificate.use_self_signed(config)
        state = "new" if made else "kept"
        print(f"syncclass: self-signed certificate ({state}, {config.tls_cert})", flush=True)
        print(f"syncclass: its SHA-256 fingerprint: {digest}", flush=True)
    tls = _ssl_context(config)
    try:
        check_data_dir(Path(config.data_dir), config.recordings_dir)
        key, admin = teacher_key(config), admin_key(config)
        if key[0] == admin[0]:
            sys.exit("syncclass: the admin key and the teacher key must differ")
        _banner(config, key, admin, tls is not None)
        logger.info("open files: up to %d", open_files_limit)
        app = create_app(dataclasses.replace(config, teacher_key=key[0], admin_key=admin[0]))
    except (DataDirError, DamagedDatabaseError) as exc:
        sys.exit(f"syncclass: {exc}")
    except OSError as exc:  # the data directory changed under us, or a file in it is unreadable
        sys.exit(f"syncclass: cannot use the data directory {config.data_dir}: {exc}")
    try:
        web.run_app(
            app,
            host=config.host,
            port=config.port,
            ssl_context=tls,
            print=None,
            access_log=logging.getLogger("syncclass.access"),
            access_log_class=RedactingAccessLogger,
            shutdown_timeout=5,
            loop=loop,
        )
    except MediaPortError as exc:
        sys.exit(f"syncclass: {exc} (choose another with --ice-port)")
    logger.info("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="syncclass", description="Live classroom streaming server"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the server")
    add_serve_arguments(serve_parser)
    cert_parser = commands.add_parser(
        "cert", help="make a self-signed TLS certificate for a school LAN"
    )
    certificate.add_arguments(cert_parser)
    admin_cli.add_commands(commands)
    course_cli.add_commands(commands)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        serve(resolve_serve_config(serve_parser, args, os.environ))
    elif args.command == "cert":
        sys.exit(certificate.run(args, os.environ))
    elif args.command == course_cli.COMMAND:
        sys.exit(course_cli.run(args, os.environ))
    elif args.command in admin_cli.COMMANDS:
        sys.exit(admin_cli.run(args, os.environ))
