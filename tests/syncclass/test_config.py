"""Config parsing: defaults, environment, command line and validation errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from media.network import SAME_AS_UDP, NetworkConfig
from syncclass.config import Config, build_serve_parser, parse_serve_args, resolve_serve_config
from tests.syncclass.usage import expect_usage_error


def test_defaults() -> None:
    assert parse_serve_args([], {}) == Config()
    assert Config() == Config(
        host="127.0.0.1",
        port=8080,
        data_dir=Path("./data"),
        teacher_key=None,
        ice_bind=(),
        ice_announce=None,
        ice_ports=None,
        tls_cert=None,
        tls_key=None,
        token_ttl_s=43200.0,
        max_classrooms=30,
        log_level="info",
    )


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    return cert, key


def test_every_option_from_command_line(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    config = parse_serve_args(
        [
            "--host=0.0.0.0",
            "--port=8443",
            f"--data-dir={tmp_path}",
            "--teacher-key=sekrit",
            "--ice-bind=192.168.1.10,10.0.0.1",
            "--ice-announce=203.0.113.7",
            "--ice-ports=40000-40100",
            f"--tls-cert={cert}",
            f"--tls-key={key}",
            "--token-ttl=600",
            "--max-classrooms=5",
            "--log-level=DEBUG",
        ],
        {},
    )
    assert config == Config(
        host="0.0.0.0",
        port=8443,
        data_dir=tmp_path,
        teacher_key="sekrit",
        ice_bind=("192.168.1.10", "10.0.0.1"),
        ice_announce="203.0.113.7",
        ice_ports=(40000, 40100),
        tls_cert=cert,
        tls_key=key,
        token_ttl_s=600.0,
        max_classrooms=5,
        log_level="debug",
    )


def test_every_option_from_environment(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    environ = {
        "SYNCCLASS_HOST": "::",
        "SYNCCLASS_PORT": "9000",
        "SYNCCLASS_DATA_DIR": str(tmp_path),
        "SYNCCLASS_TEACHER_KEY": "from-env",
        "SYNCCLASS_ICE_BIND": "10.0.0.2, 2001:db8::0:1",
        "SYNCCLASS_ICE_ANNOUNCE": "198.51.100.1",
        "SYNCCLASS_ICE_PORTS": "50000-50001",
        "SYNCCLASS_TLS_CERT": str(cert),
        "SYNCCLASS_TLS_KEY": str(key),
        "SYNCCLASS_TOKEN_TTL": "1.5",
        "SYNCCLASS_MAX_CLASSROOMS": "100",
        "SYNCCLASS_LOG_LEVEL": "warning",
        "UNRELATED": "ignored",
    }
    assert parse_serve_args([], environ) == Config(
        host="::",
        port=9000,
        data_dir=tmp_path,
        teacher_key="from-env",
        ice_bind=("10.0.0.2", "2001:db8::1"),
        ice_announce="198.51.100.1",
        ice_ports=(50000, 50001),
        tls_cert=cert,
        tls_key=key,
        token_ttl_s=1.5,
        max_classrooms=100,
        log_level="warning",
    )


def test_command_line_beats_environment() -> None:
    environ = {
        "SYNCCLASS_PORT": "9000",
        "SYNCCLASS_TEACHER_KEY": "from-env",
        "SYNCCLASS_ICE_BIND": "10.0.0.1",
        "SYNCCLASS_LOG_LEVEL": "error",
    }
    config = parse_serve_args(["--port", "7000", "--teacher-key", "from-cli"], environ)
    assert config.port == 7000
    assert config.teacher_key == "from-cli"
    # Options absent from the command line still come from the environment.
    assert config.ice_bind == ("10.0.0.1",)
    assert config.log_level == "error"


def test_empty_environment_variable_counts_as_unset() -> None:
    assert parse_serve_args([], {"SYNCCLASS_PORT": "", "SYNCCLASS_TEACHER_KEY": ""}) == Config()


def test_ice_consent_timeout() -> None:
    assert Config().ice_consent_timeout_s == NetworkConfig().consent_timeout_s == 25.0
    assert parse_serve_args(["--ice-consent-timeout", "3"], {}).ice_consent_timeout_s == 3.0
    environ = {"SYNCCLASS_ICE_CONSENT_TIMEOUT": "12.5"}
    assert parse_serve_args([], environ).ice_consent_timeout_s == 12.5


def test_made_layer_options() -> None:
    assert Config().made_layer and Config().made_layer_idle_s == 30.0
    assert NetworkConfig().made_layers and NetworkConfig().made_layer_idle_s == 30.0
    config = parse_serve_args(["--no-made-layer", "--made-layer-idle", "5"], {})
    assert not config.made_layer and config.made_layer_idle_s == 5.0
    environ = {"SYNCCLASS_NO_MADE_LAYER": "yes", "SYNCCLASS_MADE_LAYER_IDLE": "90"}
    config = parse_serve_args([], environ)
    assert not config.made_layer and config.made_layer_idle_s == 90.0


def test_ice_bind_deduplicates() -> None:
    assert parse_serve_args(["--ice-bind", "10.0.0.1,10.0.0.1,"], {}).ice_bind == ("10.0.0.1",)


def test_resolve_with_subcommand_parser() -> None:
    root = argparse.ArgumentParser(prog="syncclass")
    sub = root.add_subparsers(dest="command")
    serve = sub.add_parser("serve", parents=[build_serve_parser(add_help=False)])
    namespace = root.parse_args(["serve", "--port", "1234"])
    assert namespace.command == "serve"
    config = resolve_serve_config(serve, namespace, {"SYNCCLASS_HOST": "0.0.0.0"})
    assert (config.host, config.port) == ("0.0.0.0", 1234)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "0"], "between 1 and 65535"),
        (["--port", "65536"], "between 1 and 65535"),
        (["--port", "http"], "whole number"),
        (["--ice-ports", "40000"], "LOW-HIGH"),
        (["--ice-ports", "1000-2000"], "1024 <= LOW <= HIGH <= 65535"),
        (["--ice-ports", "40000-70000"], "1024 <= LOW <= HIGH <= 65535"),
        (["--ice-ports", "40010-40000"], "1024 <= LOW <= HIGH <= 65535"),
        (["--ice-ports", "40000-40000"], "at least 2 ports"),
        (["--ice-ports", "a-b"], "whole number"),
        (["--ice-port", "80"], "need 0 or 1024 <= PORT <= 65535"),
        (["--ice-port", "65536"], "need 0 or 1024 <= PORT <= 65535"),
        (["--ice-port", "udp"], "whole number"),
        (["--ice-port", "40000", "--ice-ports", "40000-40100"], "choose one"),
        (["--ice-tcp-port", "443"], "need off, 0 or 1024 <= PORT <= 65535"),
        (["--ice-tcp-port", "tcp"], "whole number"),
        (["--ice-bind", "10.0.0.1,not-an-ip"], "'not-an-ip' is not an IP address"),
        (["--ice-bind", "example.com"], "is not an IP address"),
        (["--ice-bind", ","], "at least one IP address"),
        (["--ice-announce", "300.1.1.1"], "is not an IP address"),
        (["--ice-announce", "0.0.0.0"], "cannot be announced"),
        (["--tls-cert", "/nonexistent/cert.pem"], "does not exist"),
        (["--token-ttl", "0"], "positive number"),
        (["--token-ttl", "nan"], "positive number"),
        (["--token-ttl", "soon"], "number of seconds"),
        (["--ice-consent-timeout", "0.5"], "from 1 to 30 seconds"),
        (["--ice-consent-timeout", "31"], "from 1 to 30 seconds"),
        (["--ice-consent-timeout", "nan"], "from 1 to 30 seconds"),
        (["--ice-consent-timeout", "soon"], "number of seconds"),
        (["--made-layer-idle", "0"], "positive number"),
        (["--made-layer-idle", "soon"], "number of seconds"),
        (["--max-classrooms", "0"], "at least 1"),
        (["--log-level", "loud"], "expected one of"),
        (["--teacher-key", " "], "must not be empty"),
        (["--host", ""], "must not be empty"),
        (["--no-such-option"], "unrecognized arguments"),
    ],
)
def test_invalid_command_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    expect_usage_error(capsys, argv, {}, message)


def test_error_names_the_command_line_option(capsys: pytest.CaptureFixture[str]) -> None:
    expect_usage_error(capsys, ["--port", "0"], {}, "argument --port: port must be between")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SYNCCLASS_PORT", "99999", "SYNCCLASS_PORT: port must be between 1 and 65535"),
        ("SYNCCLASS_ICE_BIND", "10.0.0.256", "SYNCCLASS_ICE_BIND: '10.0.0.256' is not an IP"),
        ("SYNCCLASS_ICE_PORTS", "2000-2000", "SYNCCLASS_ICE_PORTS: range 2000-2000"),
        ("SYNCCLASS_ICE_PORT", "-1", "SYNCCLASS_ICE_PORT: need 0 or 1024"),
        ("SYNCCLASS_ICE_ANNOUNCE", "nowhere", "SYNCCLASS_ICE_ANNOUNCE: 'nowhere'"),
        ("SYNCCLASS_TOKEN_TTL", "-5", "SYNCCLASS_TOKEN_TTL: must be a positive"),
        ("SYNCCLASS_LOG_LEVEL", "chatty", "SYNCCLASS_LOG_LEVEL: expected one of"),
    ],
)
def test_invalid_environment(
    capsys: pytest.CaptureFixture[str], name: str, value: str, message: str
) -> None:
    expect_usage_error(capsys, [], {name: value}, message)


def test_one_shared_media_port_by_default_or_as_chosen() -> None:
    assert Config().ice_port == 0 and Config().ice_ports is None
    assert parse_serve_args(["--ice-port", "40000"], {}).ice_port == 40000
    assert parse_serve_args([], {"SYNCCLASS_ICE_PORT": "3478"}).ice_port == 3478


def test_ice_tcp_on_the_udp_port_number_by_default_or_as_chosen() -> None:
    assert Config().ice_tcp_port == SAME_AS_UDP
    assert parse_serve_args(["--ice-tcp-port", "40001"], {}).ice_tcp_port == 40001
    assert parse_serve_args(["--ice-tcp-port", "off"], {}).ice_tcp_port is None
    assert parse_serve_args(["--ice-tcp-port", "0"], {}).ice_tcp_port is None
    assert parse_serve_args([], {"SYNCCLASS_ICE_TCP_PORT": "OFF"}).ice_tcp_port is None


def test_bad_environment_is_ignored_when_command_line_overrides() -> None:
    assert parse_serve_args(["--port", "8000"], {"SYNCCLASS_PORT": "nope"}).port == 8000


def test_tls_cert_without_key(
    capsys: pytest.CaptureFixture[str], tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    expect_usage_error(capsys, ["--tls-cert", str(cert)], {}, "must be given together")
    expect_usage_error(capsys, [], {"SYNCCLASS_TLS_KEY": str(key)}, "must be given together")


def test_tls_key_missing_file(
    capsys: pytest.CaptureFixture[str], tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, _ = tls_files
    argv = ["--tls-cert", str(cert), "--tls-key", str(tmp_path / "absent.pem")]
    expect_usage_error(capsys, argv, {}, "argument --tls-key:")


def test_tls_path_that_is_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    expect_usage_error(capsys, ["--tls-cert", str(tmp_path)], {}, "not a file")


def test_turn_servers_and_their_secret(tmp_path: Path) -> None:
    config = parse_serve_args(
        [
            "--turn-url",
            "turns:turn.school.example:443?transport=tcp",
            "--turn-url",
            "turn:203.0.113.7:3478?transport=udp,turn:[2001:db8::7]",
        ],
        {"SYNCCLASS_TURN_SECRET": "s3cret"},
    )
    assert config.turn_urls == (
        "turns:turn.school.example:443?transport=tcp",
        "turn:203.0.113.7:3478?transport=udp",
        "turn:[2001:db8::7]",
    )
    assert config.turn_secret == "s3cret"
    assert "s3cret" not in repr(config)
    secret_file = tmp_path / "turn.secret"
    secret_file.write_text("from-a-file\n")
    config = parse_serve_args(
        ["--turn-url", "turns:turn.example", "--turn-secret-file", str(secret_file)], {}
    )
    assert config.turn_secret == "from-a-file"
    environ = {"SYNCCLASS_TURN_URL": "turns:turn.example:5349", "SYNCCLASS_TURN_SECRET": "x"}
    assert parse_serve_args([], environ).turn_urls == ("turns:turn.example:5349",)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--turn-url", "stun:turn.example", "--turn-secret", "x"], "not a turn: or turns: URL"),
        (["--turn-url", "https://turn.example", "--turn-secret", "x"], "not a turn: or turns:"),
        (["--turn-url", "turn://turn.example", "--turn-secret", "x"], "without //"),
        (["--turn-url", "turn:", "--turn-secret", "x"], "expected turn:HOST[:PORT]"),
        (["--turn-url", "turn:t.example:99999", "--turn-secret", "x"], "from 1 to 65535"),
        (["--turn-url", "turn:t.example:0", "--turn-secret", "x"], "from 1 to 65535"),
        (["--turn-url", "turn:bad host", "--turn-secret", "x"], "not a host name"),
        (["--turn-url", "turn:[nope]", "--turn-secret", "x"], "not an IPv6 address"),
        (["--turn-url", "turn:t.example?transport=sctp", "--turn-secret", "x"], "transport=udp"),
        (["--turn-url", "turns:t.example?transport=udp", "--turn-secret", "x"], "TCP only"),
        (["--turn-url", "turn:u:p@t.example", "--turn-secret", "x"], "expected turn:HOST"),
        (["--turn-url", "turns:t.example"], "--turn-url needs --turn-secret"),
        (["--turn-secret", "x"], "give its --turn-url too"),
        (["--turn-url", "turns:t.example", "--turn-secret", " "], "must not be empty"),
        (["--turn-secret-file", "/nonexistent/secret"], "does not exist"),
    ],
)
def test_invalid_turn_options(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    expect_usage_error(capsys, argv, {}, message)


def test_turn_secret_given_twice_or_empty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret_file = tmp_path / "turn.secret"
    secret_file.write_text("\n")
    url = ["--turn-url", "turns:t.example"]
    expect_usage_error(capsys, [*url, "--turn-secret-file", str(secret_file)], {}, "is empty")
    secret_file.write_text("s")
    both = [*url, "--turn-secret", "s", "--turn-secret-file", str(secret_file)]
    expect_usage_error(capsys, both, {}, "give the secret one way")


def test_timetable_options(capsys: pytest.CaptureFixture[str]) -> None:
    config = parse_serve_args(
        ["--timezone", "Asia/Shanghai", "--join-early", "120", "--end-grace", "600"], {}
    )
    assert (config.timezone, config.join_early_s, config.end_grace_s) == (
        "Asia/Shanghai",
        120.0,
        600.0,
    )
    assert parse_serve_args([], {"SYNCCLASS_TIMEZONE": "UTC"}).timezone == "UTC"
    assert parse_serve_args([], {}).timezone is None  # the server's own zone
    expect_usage_error(capsys, ["--timezone", "Mars/Olympus"], {}, "is not a time zone")
    expect_usage_error(capsys, ["--join-early", "-5"], {}, "must be from 0 to 3600")
    expect_usage_error(capsys, ["--end-grace", "nan"], {}, "must be from 0 to 86400")


def test_the_lesson_directory_options_come_together() -> None:
    base = ["--redis", "redis://127.0.0.1:6379/0", "--server-url", "http://10.0.0.2:8080"]
    config = parse_serve_args(
        [*base, "--cluster-secret", "s" * 16, "--edge", "--region", "county-a"], {}
    )
    assert (config.redis_url, config.server_url, config.edge, config.region) == (
        "redis://127.0.0.1:6379/0",
        "http://10.0.0.2:8080",
        True,
        "county-a",
    )
    assert "s" * 16 not in repr(config) and "redis://" not in repr(config)
    from_env = parse_serve_args(
        [],
        {
            "SYNCCLASS_REDIS": "redis://r:6379/1",
            "SYNCCLASS_SERVER_URL": "https://edge.example",
            "SYNCCLASS_CLUSTER_SECRET": "e" * 16,
        },
    )
    assert from_env.redis_url == "redis://r:6379/1" and not from_env.edge
    # without --redis nothing of it applies
    assert parse_serve_args([], {}).redis_url is None
    for argv in (
        base,  # no secret
        ["--redis", "redis://127.0.0.1:6379/0", "--cluster-secret", "s" * 16],  # no url
        ["--edge"],
        ["--region", "a"],
        [*base, "--cluster-secret", "short"],
        ["--redis", "http://x", "--server-url", "http://a", "--cluster-secret", "s" * 16],
        [*base[:2], "--server-url", "http://a/path", "--cluster-secret", "s" * 16],
        [*base, "--cluster-secret", "s" * 16, "--region", "a b"],
    ):
        with pytest.raises(SystemExit):
            parse_serve_args(argv, {})
