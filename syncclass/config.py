"""Server settings from the command line and SYNCCLASS_* environment variables."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from media.network import CONSENT_TIMEOUT_S, SAME_AS_UDP
from signaling.turn_credentials import TurnUrlError, parse_turn_url

ENV_PREFIX = "SYNCCLASS_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    teacher_key: str | None = None
    admin_key: str | None = None
    ice_bind: tuple[str, ...] = ()  # empty: gather candidates on every local address
    ice_announce: str | None = None
    ice_ports: tuple[int, int] | None = None  # a port per peer from this range
    ice_port: int = 0  # without ice_ports: the one UDP port every peer shares (0: a free one)
    # ICE over TCP (passive candidates) on this port; SAME_AS_UDP: ice_port's number; None: off
    ice_tcp_port: int | None = SAME_AS_UDP
    rtmp_port: int | None = None  # encoders push RTMP here (None: no RTMP)
    ice_consent_timeout_s: float = CONSENT_TIMEOUT_S  # a peer unheard of this long is closed
    connect_timeout_s: float = 15.0  # a session not connected (ICE + DTLS) by then is closed
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_ttl_s: float = 43200.0
    max_classrooms: int = 30
    log_level: str = "info"
    log_file: Path | None = None  # None: standard error (the journal or the container's log)
    log_retain_days: int = 180
    recordings_dir: Path | None = None  # None: DATA_DIR/recordings
    retain_days: float | None = None  # None: keep recordings until deleted
    record_min_free_mb: int = 1000
    disk_reserve_mb: int = 32  # kept back in the data directory for a disk that fills up
    max_on_stage: int = 1
    cors_origins: tuple[str, ...] = ()  # origins of other sites' pages allowed to use the API
    # (count, seconds) per client address; None: unlimited
    rate_limit_lessons: tuple[int, float] | None = (120, 60.0)
    rate_limit_media: tuple[int, float] | None = (300, 60.0)
    rate_limit_messages: tuple[int, float] | None = (600, 10.0)
    event_sockets_per_address: int = 64  # classroom event sockets one client address may hold
    catch_up_per_address: int = 16  # catch-up streams one client address may hold at once
    self_signed: bool = False
    # label /metrics' per-lesson series with lesson ids (off: /metrics names no lesson)
    metrics_lesson_ids: bool = False
    # fit what each classroom is sent to its link (off: everybody gets everything, as a baseline)
    no_adaptation: bool = False
    # a lighter layer made once per lesson of a single-layer camera, for the classrooms whose
    # link cannot carry it; stopped once none has needed it for this many seconds
    made_layer: bool = True
    made_layer_idle_s: float = 30.0
    attendance_retain_days: float | None = 365.0  # None: keep attendance and quality samples
    # transport-wide congestion control feedback to publishers (off: Chrome's slow loss-based
    # ramp, as a baseline)
    transport_cc: bool = True
    # TURN servers handed to classrooms and teachers with short-lived credentials (TURN REST,
    # coturn's use-auth-secret); the secret is coturn's static-auth-secret
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = dataclasses.field(default=None, repr=False)
    turn_secret_file: Path | None = None
    # timetables: their time zone (None: the server's), how early a classroom on a course link
    # enters a lesson, and how long after its end a lesson nobody teaches ends by itself
    timezone: str | None = None
    join_early_s: float = 300.0
    end_grace_s: float = 900.0
    # several servers sharing a lesson directory in Redis (None: this server alone, as always)
    redis_url: str | None = dataclasses.field(default=None, repr=False)
    server_url: str | None = None  # this server's address as classrooms and other servers reach it
    region: str | None = None  # the classrooms this server is near (an edge of that region)
    edge: bool = False  # takes classrooms of lessons held on other servers of the directory
    cluster_secret: str | None = dataclasses.field(default=None, repr=False)
    cluster_secret_file: Path | None = None
    # a home carrying this many sessions sends a classroom with no edge of its region to the
    # least loaded edge
    spill_load: int = 200


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


def _positive(text: str) -> int:
    number = _int(text)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


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


def _udp_port(text: str) -> int:
    port = _int(text)
    if port != 0 and not 1024 <= port <= 65535:
        raise ValueError(f"need 0 or 1024 <= PORT <= 65535, got {port}")
    return port


def _tcp_port(text: str) -> int | None:
    if text.strip().lower() in ("off", "0"):
        return None
    port = _int(text)
    if not 1024 <= port <= 65535:
        raise ValueError(f"need off, 0 or 1024 <= PORT <= 65535, got {port}")
    return port


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


def _connect_timeout(text: str) -> float:
    try:
        seconds = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    # ICE + DTLS take a few round trips: ~1.5 s measured on a 600 ms satellite link
    if not (math.isfinite(seconds) and 0.5 <= seconds <= 120):
        raise ValueError(f"must be from 0.5 to 120 seconds, got {text!r}")
    return seconds


def _timezone(text: str) -> str:
    name = text.strip()
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise ValueError(
            f"{text!r} is not a time zone (an IANA name: Asia/Shanghai, UTC)"
        ) from None
    return name


def _seconds_up_to(high: float) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            seconds = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {text!r}") from None
        if not (math.isfinite(seconds) and 0 <= seconds <= high):
            raise ValueError(f"must be from 0 to {high:g} seconds, got {text!r}")
        return seconds

    return convert


def _consent_timeout(text: str) -> float:
    try:
        seconds = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    # RFC 7675: consent lapses at the latest 30 s after the peer was last heard
    if not (math.isfinite(seconds) and 1 <= seconds <= 30):
        raise ValueError(f"must be from 1 to 30 seconds, got {text!r}")
    return seconds


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"{text!r} does not exist or is not a file")
    return path


def _directory(text: str) -> Path:
    if not text.strip():
        raise ValueError("must not be empty")
    return Path(text).expanduser()


def _key(text: str) -> str:
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


def _on_stage(text: str) -> int:
    count = _int(text)
    if not 1 <= count <= 3:
        raise ValueError(f"must be from 1 to 3, got {count}")
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


def _origins(text: str) -> tuple[str, ...]:
    origins = []
    for part in text.split(","):
        part = part.strip().lower().rstrip("/")
        if not part:
            continue
        url = urlsplit(part)
        try:
            port = url.port
        except ValueError:
            port = -1
        if url.scheme not in ("http", "https") or not url.hostname or url.path or port == -1:
            raise ValueError(f"{part!r} is not an origin such as https://school.example:8443")
        if (url.scheme, port) in (("http", 80), ("https", 443)):
            part = f"{url.scheme}://{url.netloc.rsplit(':', 1)[0]}"  # as browsers send it
        origins.append(part)
    if not origins:
        raise ValueError("expected at least one origin")
    return tuple(dict.fromkeys(origins))


def _rate(text: str) -> tuple[int, float] | None:
    if text.strip().lower() == "off":
        return None
    count_text, sep, seconds_text = text.strip().partition("/")
    try:
        count, seconds = int(count_text), float(seconds_text)
    except ValueError:
        count, seconds = 0, 0.0
    if not sep or count < 1 or not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"expected COUNT/SECONDS such as 300/60, or off; got {text!r}")
    return count, seconds


def _switch(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "yes", "true", "on"):
        return True
    if word in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


def _switch_off(text: str) -> bool:
    return not _switch(text)


def _turn_urls(text: str) -> tuple[str, ...]:
    urls = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            urls.append(parse_turn_url(part))
        except TurnUrlError as exc:
            raise ValueError(str(exc)) from None
    if not urls:
        raise ValueError("expected at least one turn: or turns: URL")
    return tuple(dict.fromkeys(urls))


def _read_secret(path: Path) -> str:
    """The secret kept in ``path``: its text without the line break an editor leaves."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc}") from None
    if not text:
        raise ValueError(f"{str(path)!r} is empty")
    return text


def _log_file(text: str) -> Path:
    path = _directory(text)
    if path.is_dir():
        raise ValueError(f"{text!r} is a directory; give a file such as /var/log/syncclass.log")
    return path


def _whole_days(text: str) -> int:
    days = _int(text)
    if days < 1:
        raise ValueError(f"must be at least 1 day, got {days}")
    return days


def _redis_url(text: str) -> str:
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected redis://[:PASSWORD@]HOST[:PORT][/DB] (or rediss://, unix://)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("the Redis URL has an invalid port") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("the Redis URL must name a host")
    return text


def _server_url(text: str) -> str:
    text = text.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected http(s)://HOST[:PORT], got {text!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    if parts.username or parts.password or parts.query or parts.fragment or parts.path:
        raise ValueError(f"expected http(s)://HOST[:PORT] and nothing more, got {text!r}")
    return text


def _region(text: str) -> str:
    text = text.strip()
    if not 1 <= len(text) <= 64 or not all(c.isalnum() or c in "-_." for c in text):
        raise ValueError("a region is 1 to 64 letters, digits, '-', '_' or '.'")
    return text


def _cluster_secret(text: str) -> str:
    if len(text.strip()) < 16:
        raise ValueError("the cluster secret must be at least 16 characters")
    return text.strip()


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
    repeatable: bool = False  # may be given several times; the values are joined by commas
    switch: bool = False  # a flag without a value on the command line (yes/no in the env)

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
        _key,
    ),
    _Option(
        "--admin-key",
        "admin_key",
        "KEY",
        "admin key (manages teacher accounts and sees every lesson) to use instead of the one "
        "stored in the data directory; prefer the environment variable",
        _key,
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
        "--ice-port",
        "ice_port",
        "PORT",
        "the one UDP port all media shares (0: a free port, chosen at the first peer)",
        _udp_port,
    ),
    _Option(
        "--ice-tcp-port",
        "ice_tcp_port",
        "PORT|off",
        "the TCP port for media over ICE-TCP, for classrooms whose firewall lets no UDP out "
        "(off or 0: none)",
        _tcp_port,
        "the number of --ice-port; none with --ice-ports",
    ),
    _Option(
        "--rtmp-port",
        "rtmp_port",
        "PORT|off",
        "a TCP port (on --host) where encoders push a lesson's camera over RTMP: "
        "rtmp://HOST:PORT/live with the lesson's teacher token as the stream key (1935 is "
        "RTMP's usual port)",
        _tcp_port,
        "off",
    ),
    _Option(
        "--ice-ports",
        "ice_ports",
        "LOW-HIGH",
        "a UDP port per peer from this range, instead of one shared port",
        _port_range,
    ),
    _Option(
        "--ice-consent-timeout",
        "ice_consent_timeout_s",
        "SECONDS",
        "close a peer's session when nothing authenticated came from it for this long "
        "(ICE consent, RFC 7675; 1 to 30)",
        _consent_timeout,
    ),
    _Option(
        "--connect-timeout",
        "connect_timeout_s",
        "SECONDS",
        "close a WHIP/WHEP session that has not connected (ICE and DTLS) this long after its "
        "offer; until it connects a classroom is not counted in the lesson (0.5 to 120)",
        _connect_timeout,
    ),
    _Option(
        "--tls-cert", "tls_cert", "FILE", "TLS certificate (PEM); needs --tls-key", _existing_file
    ),
    _Option(
        "--tls-key", "tls_key", "FILE", "TLS private key (PEM); needs --tls-cert", _existing_file
    ),
    _Option(
        "--self-signed",
        "self_signed",
        "",
        "serve HTTPS with a self-signed certificate for this machine, made in DATA_DIR/tls "
        "if there is none (see syncclass cert)",
        _switch,
        switch=True,
    ),
    _Option(
        "--no-adaptation",
        "no_adaptation",
        "",
        "send every classroom the full stream whatever its link can carry (a baseline for "
        "comparison; by default a classroom whose link cannot carry the video gets sound only "
        "until it can)",
        _switch,
        switch=True,
    ),
    _Option(
        "--no-made-layer",
        "made_layer",
        "",
        "never make a lighter layer of a single-layer camera (RTSP, RTMP, FFmpeg or OBS over "
        "WHIP) for the classrooms whose link cannot carry it: they get sound only instead",
        _switch_off,
        switch=True,
    ),
    _Option(
        "--made-layer-idle",
        "made_layer_idle_s",
        "SECONDS",
        "stop a made layer once no classroom has needed it for this long",
        _ttl,
    ),
    _Option(
        "--metrics-lesson-ids",
        "metrics_lesson_ids",
        "",
        "add per-lesson series, labelled with lesson ids, to /metrics (off: totals only, so "
        "whoever reaches the port learns no lesson's id)",
        _switch,
        switch=True,
    ),
    _Option(
        "--no-transport-cc",
        "transport_cc",
        "",
        "send publishers no transport-wide congestion control feedback (and no start-bitrate "
        "hint): their browsers then ramp up slowly, from loss alone",
        _switch_off,
        switch=True,
    ),
    _Option(
        "--cors-origin",
        "cors_origins",
        "ORIGIN[,ORIGIN...]",
        "origin of another site whose pages may use the API and WHIP/WHEP (repeatable)",
        _origins,
        "none",
        repeatable=True,
    ),
    _Option(
        "--turn-url",
        "turn_urls",
        "URL",
        "a TURN server (turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]) handed to "
        "classrooms and teachers with short-lived credentials; needs --turn-secret "
        "(repeatable)",
        _turn_urls,
        "none",
        repeatable=True,
    ),
    _Option(
        "--turn-secret",
        "turn_secret",
        "SECRET",
        "the TURN server's shared secret (coturn's static-auth-secret with use-auth-secret); "
        "other users can see command lines, so prefer the environment variable or "
        "--turn-secret-file",
        _key,
    ),
    _Option(
        "--turn-secret-file",
        "turn_secret_file",
        "FILE",
        "read the TURN server's shared secret from this file instead",
        _existing_file,
    ),
    _Option(
        "--redis",
        "redis_url",
        "URL",
        "the lesson directory shared by several servers (redis://HOST:PORT/DB): where each "
        "lesson lives and how loaded each server is; needs --server-url and --cluster-secret",
        _redis_url,
        "none: this server alone",
    ),
    _Option(
        "--server-url",
        "server_url",
        "URL",
        "this server's address as classrooms and the other servers reach it "
        "(http(s)://HOST[:PORT]), as the directory gives it out",
        _server_url,
    ),
    _Option(
        "--region",
        "region",
        "NAME",
        "the region whose classrooms this server is near: a join link with ?region=NAME is "
        "sent to an edge of that region",
        _region,
    ),
    _Option(
        "--edge",
        "edge",
        "",
        "take classrooms of lessons held on other servers of the directory, relaying them",
        _switch,
        switch=True,
    ),
    _Option(
        "--cluster-secret",
        "cluster_secret",
        "SECRET",
        "the secret every server of the directory shares, to vouch for each other's "
        "classrooms; prefer the environment variable or --cluster-secret-file",
        _cluster_secret,
    ),
    _Option(
        "--cluster-secret-file",
        "cluster_secret_file",
        "FILE",
        "read the cluster secret from this file instead",
        _existing_file,
    ),
    _Option(
        "--spill-load",
        "spill_load",
        "SESSIONS",
        "with --redis: from this many sessions on, a lesson's home sends classrooms with no "
        "edge of their region to the least loaded edge",
        _positive,
    ),
    _Option(
        "--rate-limit-lessons",
        "rate_limit_lessons",
        "COUNT/SECONDS",
        "lesson creations per client address, or off",
        _rate,
        "120/60",
    ),
    _Option(
        "--rate-limit-media",
        "rate_limit_media",
        "COUNT/SECONDS",
        "WHIP/WHEP offers per client address (a school behind NAT is one address), or off",
        _rate,
        "300/60",
    ),
    _Option(
        "--rate-limit-messages",
        "rate_limit_messages",
        "COUNT/SECONDS",
        "lesson event messages per client address, or off",
        _rate,
        "600/10",
    ),
    _Option(
        "--max-event-sockets-per-address",
        "event_sockets_per_address",
        "N",
        "classroom event sockets one client address may hold over all lessons (a school "
        "behind NAT is one address); the teacher's do not count",
        _positive,
    ),
    _Option(
        "--max-catch-up-per-address",
        "catch_up_per_address",
        "N",
        "catch-up streams (a live lesson from an earlier time, over HTTP) one client address "
        "may read at once",
        _positive,
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
        "--log-file",
        "log_file",
        "FILE",
        "write the log to this file, a new one each day at midnight, instead of standard error",
        _log_file,
        "standard error",
    ),
    _Option(
        "--log-retain-days",
        "log_retain_days",
        "DAYS",
        "with --log-file, delete each day's log file this many days later",
        _whole_days,
    ),
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
        "--max-on-stage",
        "max_on_stage",
        "N",
        "how many classrooms the teacher may call on stage at once (1 to 3)",
        _on_stage,
    ),
    _Option(
        "--attendance-retain-days",
        "attendance_retain_days",
        "DAYS",
        "delete attendance, hands, stage and quality records this many days after a lesson",
        _days,
    ),
    _Option(
        "--record-min-free-mb",
        "record_min_free_mb",
        "MB",
        "stop recording (keeping what is recorded) when the disk has less free space than this",
        _megabytes,
    ),
    _Option(
        "--timezone",
        "timezone",
        "ZONE",
        "the time zone timetables are given and shown in (an IANA name, e.g. Asia/Shanghai)",
        _timezone,
        "the server's",
    ),
    _Option(
        "--join-early",
        "join_early_s",
        "SECONDS",
        "a timetabled lesson opens to the classrooms on its course link this long before it "
        "starts (0 to 3600)",
        _seconds_up_to(3600),
    ),
    _Option(
        "--end-grace",
        "end_grace_s",
        "SECONDS",
        "a timetabled lesson nobody teaches ends by itself this long after its end (0 to 86400)",
        _seconds_up_to(86400),
    ),
    _Option(
        "--disk-reserve-mb",
        "disk_reserve_mb",
        "MB",
        "space kept back in the data directory and given back when the disk fills up, so "
        "that lessons can still end (0: none)",
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
        shown = f"; default {default}" if default not in (None, (), False) else ""
        if option.switch:
            shown = ""  # a switch is off unless given
        kind: dict[str, object] = {"metavar": option.metavar}
        if option.switch:
            kind = {"action": "store_const", "const": "yes"}
        elif option.repeatable:
            kind["action"] = "append"
        parser.add_argument(
            option.flag,
            dest=option.field,
            # None means "not on the command line", so the environment can fill it in later.
            default=None,
            help=f"{option.help} (env {option.env}{shown})",
            **kind,  # type: ignore[arg-type]
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
        raw: str | list[str] | None = getattr(namespace, option.field, None)
        if isinstance(raw, list):  # a repeatable option given more than once
            raw = ",".join(raw)
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
    if "ice_port" in values and "ice_ports" in values:
        parser.error("--ice-port shares one port, --ice-ports gives each peer one: choose one")
    if values.get("self_signed") and "tls_cert" in values:
        parser.error("--self-signed makes its own certificate: leave out --tls-cert/--tls-key")
    secret_file = values.get("turn_secret_file")
    if isinstance(secret_file, Path):
        if "turn_secret" in values:
            parser.error("--turn-secret and --turn-secret-file: give the secret one way")
        try:
            values["turn_secret"] = _read_secret(secret_file)
        except ValueError as exc:
            parser.error(f"--turn-secret-file: {exc}")
    if "turn_urls" in values and "turn_secret" not in values:
        parser.error("--turn-url needs --turn-secret (coturn's static-auth-secret)")
    if "turn_secret" in values and "turn_urls" not in values:
        parser.error("--turn-secret is for a TURN server: give its --turn-url too")
    _check_cluster(parser, values)
    return Config(**values)  # type: ignore[arg-type]


def _check_cluster(parser: argparse.ArgumentParser, values: dict[str, object]) -> None:
    """The directory's options come together: a server in it says where it is reached and
    holds the shared secret; without --redis none of them means anything."""
    secret_file = values.get("cluster_secret_file")
    if isinstance(secret_file, Path):
        if "cluster_secret" in values:
            parser.error("--cluster-secret and --cluster-secret-file: give the secret one way")
        try:
            values["cluster_secret"] = _cluster_secret(_read_secret(secret_file))
        except ValueError as exc:
            parser.error(f"--cluster-secret-file: {exc}")
    if "redis_url" in values:
        if "server_url" not in values:
            parser.error("--redis needs --server-url: the address the other servers give out")
        if "cluster_secret" not in values:
            parser.error("--redis needs --cluster-secret (the same on every server)")
        return
    for field, flag in (
        ("server_url", "--server-url"),
        ("region", "--region"),
        ("edge", "--edge"),
        ("cluster_secret", "--cluster-secret"),
        ("spill_load", "--spill-load"),
    ):
        if values.get(field):
            parser.error(f"{flag} is for a server of a lesson directory: give --redis too")


def parse_serve_args(argv: list[str], environ: Mapping[str, str]) -> Config:
    parser = build_serve_parser()
    return resolve_serve_config(parser, parser.parse_args(argv), environ)
