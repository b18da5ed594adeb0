"""Server settings from the command line and SYNCCLASS_* environment variables."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "SYNCCLASS_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    teacher_key: str | None = None
    ice_bind: tuple[str, ...] = ()  # empty: gather candidates on every local address
    ice_announce: str | None = None
    ice_ports: tuple[int, int] | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_ttl_s: float = 43200.0
    max_classrooms: int = 30
    log_level: str = "info"
    recordings_dir: Path | None = None  # None: DATA_DIR/recordings
    retain_days: float | None = None  # None: keep recordings until deleted
    record_min_free_mb: int = 1000


def _host(text: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _port(text: str) -> int:
    port = _int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return port


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _ip(text: str) -> str:
    try:
        # Normalised so e.g. differently spelled IPv6 addresses compare equal later on.
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an IP address") from None


def _ip_list(text: str) -> tuple[str, ...]:
    addresses = [_ip(part) for part in text.split(",") if part.strip()]
    if not addresses:
        raise ValueError("expected at least one IP address")
    return tuple(dict.fromkeys(addresses))


def _announce(text: str) -> str:
    address = _ip(text)
    if ipaddress.ip_address(address).is_unspecified:
        raise ValueError(f"{address} cannot be announced to peers; give a reachable address")
    return address


def _port_range(text: str) -> tuple[int, int]:
    low_text, sep, high_text = text.strip().partition("-")
    if not sep:
        raise ValueError(f"expected LOW-HIGH, got {text!r}")
    low, high = _int(low_text), _int(high_text)
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"need 1024 <= LOW <= HIGH <= 65535, got {low}-{high}")
    # Each ICE session needs its own port, so a single port would serve one peer at most.
    if high - low + 1 < 2:
        raise ValueError(f"range {low}-{high} must span at least 2 ports")
    return low, high


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"{text!r} does not exist or is not a file")
    return path


def _directory(text: str) -> Path:
    if not text.strip():
        raise ValueError("must not be empty")
    return Path(text).expanduser()


def _teacher_key(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _ttl(text: str) -> float:
    try:
        ttl = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"must be a positive number of seconds, got {text!r}")
    return ttl


def _max_classrooms(text: str) -> int:
    count = _int(text)
    if count < 1:
        raise ValueError(f"must be at least 1, got {count}")
    return count


def _days(text: str) -> float:
    try:
        days = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number of days, got {text!r}") from None
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"must be a positive number of days, got {text!r}")
    return days


def _megabytes(text: str) -> int:
    size = _int(text)
    if size < 0:
        raise ValueError(f"must be 0 or more, got {size}")
    return size


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


@dataclass(frozen=True)
class _Option:
    flag: str
    field: str
    metavar: str
    help: str
    convert: Callable[[str], object]
    # Shown in --help when the Config default (None or empty) says nothing useful.
    default_text: str | None = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.removeprefix("--").upper().replace("-", "_")


# One table drives the parser, the environment lookup and the conversion, so a setting cannot
# be validated differently depending on where it came from.
_OPTIONS: tuple[_Option, ...] = (
    _Option("--host", "host", "HOST", "address for the HTTP(S) server to listen on", _host),
    _Option("--port", "port", "PORT", "TCP port for the HTTP(S) server", _port),
    _Option(
        "--data-dir",
        "data_dir",
        "DIR",
        "directory for the lesson database and keys",
        _directory,
    ),
    _Option(
        "--teacher-key",
        "teacher_key",
        "KEY",
        "teacher key to use instead of the one stored in the data directory; other users can "
        "see command lines, so prefer the environment variable",
        _teacher_key,
    ),
    _Option(
        "--ice-bind",
        "ice_bind",
        "ADDR[,ADDR...]",
        "local IP addresses to gather ICE candidates on",
        _ip_list,
        "all local addresses",
    ),
    _Option(
        "--ice-announce",
        "ice_announce",
        "ADDR",
        "public IP address to advertise to peers, e.g. behind 1:1 NAT",
        _announce,
    ),
    _Option(
        "--ice-ports", "ice_ports", "LOW-HIGH", "UDP port range for media", _port_range, "any port"
    ),
    _Option(
        "--tls-cert", "tls_cert", "FILE", "TLS certificate (PEM); needs --tls-key", _existing_file
    ),
    _Option(
        "--tls-key", "tls_key", "FILE", "TLS private key (PEM); needs --tls-cert", _existing_file
    ),
    _Option("--token-ttl", "token_ttl_s", "SECONDS", "lifetime of issued access tokens", _ttl),
    _Option(
        "--max-classrooms",
        "max_classrooms",
        "N",
        "default number of receiving classrooms per lesson",
        _max_classrooms,
    ),
    _Option("--log-level", "log_level", "LEVEL", f"one of {', '.join(LOG_LEVELS)}", _log_level),
    _Option(
        "--recordings-dir",
        "recordings_dir",
        "DIR",
        "directory for lesson recordings",
        _directory,
        "DATA_DIR/recordings",
    ),
    _Option(
        "--retain-days",
        "retain_days",
        "DAYS",
        "delete recordings this many days after they were made",
        _days,
        "keep",
    ),
    _Option(
        "--record-min-free-mb",
        "record_min_free_mb",
        "MB",
        "stop recording (keeping what is recorded) when the disk has less free space than this",
        _megabytes,
    ),
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the serve options to ``parser`` (e.g. a subcommand parser)."""
    defaults = {field.name: field.default for field in dataclasses.fields(Config)}
    for option in _OPTIONS:
        default = defaults[option.field]
        if option.default_text is not None:
            default = option.default_text
        shown = f"; default {default}" if default not in (None, ()) else ""
        parser.add_argument(
            option.flag,
            dest=option.field,
            metavar=option.metavar,
            # None means "not on the command line", so the environment can fill it in later.
            default=None,
            help=f"{option.help} (env {option.env}{shown})",
        )


def build_serve_parser(
    prog: str | None = "syncclass serve", add_help: bool = True
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        add_help=add_help,
        description="Run the syncclass server. Command-line options override environment "
        "variables, which override the defaults.",
    )
    add_serve_arguments(parser)
    return parser


def resolve_serve_config(
    parser: argparse.ArgumentParser, namespace: argparse.Namespace, environ: Mapping[str, str]
) -> Config:
    """Merge parsed options over the environment over defaults; ``parser.error`` on bad values.

    An environment variable set to the empty string counts as unset, as container tooling
    often exports empty variables for options the operator left out.
    """
    values: dict[str, object] = {}
    for option in _OPTIONS:
        raw: str | None = getattr(namespace, option.field, None)
        source = f"argument {option.flag}"
        if raw is None:
            raw = environ.get(option.env) or None
            source = f"environment variable {option.env}"
        if raw is None:
            continue
        try:
            values[option.field] = option.convert(raw)
        except ValueError as exc:
            parser.error(f"{source}: {exc}")
    if ("tls_cert" in values) != ("tls_key" in values):
        parser.error("--tls-cert and --tls-key must be given together")
    return Config(**values)  # type: ignore[arg-type]


def parse_serve_args(argv: list[str], environ: Mapping[str, str]) -> Config:
    parser = build_serve_parser()
    return resolve_serve_config(parser, parser.parse_args(argv), environ)
