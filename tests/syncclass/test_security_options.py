"""The security options of ``syncclass serve``: allowed origins, rate limits, --self-signed."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncclass.config import Config, parse_serve_args
from tests.syncclass.usage import expect_usage_error


def test_cors_origins_from_flags_lists_and_environment() -> None:
    config = parse_serve_args(
        [
            "--cors-origin",
            "HTTPS://Portal.example/",
            "--cors-origin",
            "https://b.example:443, http://c.example:8080",
        ],
        {"SYNCCLASS_CORS_ORIGIN": "https://ignored.example"},
    )
    # as browsers send them: lower case, no default port, no slash
    assert config.cors_origins == (
        "https://portal.example",
        "https://b.example",
        "http://c.example:8080",
    )
    from_env = parse_serve_args([], {"SYNCCLASS_CORS_ORIGIN": "https://x.example,http://[::1]:80"})
    assert from_env.cors_origins == ("https://x.example", "http://[::1]")
    assert Config().cors_origins == ()


def test_rate_limits() -> None:
    assert (Config().rate_limit_lessons, Config().rate_limit_media) == ((120, 60.0), (300, 60.0))
    config = parse_serve_args(
        ["--rate-limit-media", "100000/1", "--rate-limit-lessons", "off"],
        {"SYNCCLASS_RATE_LIMIT_MESSAGES": "50/2.5"},
    )
    assert config.rate_limit_media == (100000, 1.0)
    assert config.rate_limit_lessons is None
    assert config.rate_limit_messages == (50, 2.5)


def test_self_signed(tmp_path: Path) -> None:
    assert parse_serve_args(["--self-signed"], {}).self_signed is True
    assert parse_serve_args([], {"SYNCCLASS_SELF_SIGNED": "yes"}).self_signed is True
    assert parse_serve_args([], {"SYNCCLASS_SELF_SIGNED": "0"}).self_signed is False
    assert Config().self_signed is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cors-origin", "https://a.example/page"], "is not an origin"),
        (["--cors-origin", "ftp://a.example"], "is not an origin"),
        (["--cors-origin", "https://a.example:99999"], "is not an origin"),
        (["--cors-origin", " , "], "at least one origin"),
        (["--rate-limit-media", "300"], "COUNT/SECONDS"),
        (["--rate-limit-media", "0/60"], "COUNT/SECONDS"),
        (["--rate-limit-messages", "5/-1"], "COUNT/SECONDS"),
        (["--rate-limit-lessons", "a/b"], "COUNT/SECONDS"),
    ],
)
def test_bad_values_are_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    expect_usage_error(capsys, argv, {}, message)


def test_self_signed_and_a_certificate_exclude_each_other(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    with pytest.raises(SystemExit):
        parse_serve_args(["--self-signed", f"--tls-cert={cert}", f"--tls-key={key}"], {})
    assert "--self-signed" in capsys.readouterr().err
