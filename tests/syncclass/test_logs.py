"""Where the log goes and how long it stays: standard error by default; with --log-file, one
file per day, deleted after --log-retain-days."""

from __future__ import annotations

import logging
import logging.handlers
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncclass.config import Config, parse_serve_args
from syncclass.logs import configure_logging
from tests.server import start_server
from tests.syncclass.usage import expect_usage_error


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging takes over the root logger; give it back to pytest afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_log_options_from_command_line_and_environment(tmp_path: Path) -> None:
    assert (Config().log_file, Config().log_retain_days) == (None, 180)
    config = parse_serve_args(
        ["--log-file", str(tmp_path / "syncclass.log"), "--log-retain-days", "30"], {}
    )
    assert (config.log_file, config.log_retain_days) == (tmp_path / "syncclass.log", 30)
    environ = {"SYNCCLASS_LOG_FILE": str(tmp_path / "a.log"), "SYNCCLASS_LOG_RETAIN_DAYS": "7"}
    config = parse_serve_args([], environ)
    assert (config.log_file, config.log_retain_days) == (tmp_path / "a.log", 7)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-retain-days", "0"], "at least 1 day"),
        (["--log-retain-days", "a week"], "whole number"),
        (["--log-file", "."], "is a directory"),
        (["--log-file", ""], "must not be empty"),
    ],
)
def test_bad_log_options_are_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    expect_usage_error(capsys, argv, {}, message)


def test_the_server_writes_its_log_to_the_log_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "syncclass.log"
    server = start_server(tmp_path / "data", "--log-file", str(log_file))
    try:
        lesson = server.create_lesson("日志")
    finally:
        server.stop()
    written = log_file.read_text(encoding="utf-8")
    assert f"lesson {lesson['id']} created" in written
    assert "stopped" in written
    assert f"lesson {lesson['id']}" not in server.log()  # standard output keeps only the banner


def test_old_days_are_deleted_after_the_retention(tmp_path: Path, root_logging: None) -> None:
    log_file = tmp_path / "syncclass.log"
    for day in range(1, 7):
        (tmp_path / f"syncclass.log.2020-01-0{day}").write_text(f"day {day}\n")
    handler = configure_logging(Config(data_dir=tmp_path, log_file=log_file, log_retain_days=3))
    logging.getLogger("syncclass").info("today")
    assert isinstance(handler, logging.handlers.TimedRotatingFileHandler)
    handler.doRollover()  # what midnight does
    kept = sorted(p.name for p in tmp_path.glob("syncclass.log.*"))
    assert len(kept) == 3, kept
    assert kept[:2] == ["syncclass.log.2020-01-05", "syncclass.log.2020-01-06"]
    assert (tmp_path / kept[2]).read_text(encoding="utf-8").endswith("today\n")


def test_a_server_off_over_midnight_starts_a_new_file(tmp_path: Path, root_logging: None) -> None:
    log_file = tmp_path / "syncclass.log"
    log_file.write_text("the day before yesterday\n", encoding="utf-8")
    two_days_ago = time.time() - 2 * 86400
    os.utime(log_file, (two_days_ago, two_days_ago))
    configure_logging(Config(data_dir=tmp_path, log_file=log_file))
    logging.getLogger("syncclass").info("this morning")
    day = time.strftime("%Y-%m-%d", time.localtime(two_days_ago))
    assert (tmp_path / f"syncclass.log.{day}").read_text(encoding="utf-8") == (
        "the day before yesterday\n"
    )
    assert log_file.read_text(encoding="utf-8").endswith("this morning\n")
