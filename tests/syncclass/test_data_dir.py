"""A data directory that lost or damaged its database is refused with one plain line, and left
as it was: the server never starts afresh over an earlier server's recordings and keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from syncclass.store import DATABASE_FILE, SqliteLessonStore
from tests.server import ROOT, free_port, serve_command, start_server


def _refused(command: list[str]) -> str:
    """Run a command that must refuse; its one line of complaint."""
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("syncclass: ")]
    assert lines and lines[-1] == output.splitlines()[-1], output
    return lines[-1]


def _earlier_server(data_dir: Path) -> None:
    """A data directory as a server leaves it: a lesson in the database, a recording, keys."""
    server = start_server(data_dir)
    try:
        server.create_lesson("Kept")
    finally:
        server.stop()
    (data_dir / "recordings" / "lesson1").mkdir(parents=True, exist_ok=True)
    (data_dir / "recordings" / "lesson1" / "camera.webm").write_bytes(b"\x1a\x45\xdf\xa3")


def test_an_emptied_database_beside_recordings_and_keys_is_refused(tmp_path: Path) -> None:
    _earlier_server(tmp_path)
    database = tmp_path / DATABASE_FILE
    database.write_bytes(b"")
    for leftover in ("-wal", "-shm"):
        database.with_name(database.name + leftover).unlink(missing_ok=True)
    line = _refused(serve_command(free_port(), tmp_path))
    assert "is empty" in line and "restore the database" in line, line
    assert database.stat().st_size == 0  # nothing was made over it
    # the admin commands refuse it the same way
    teacher_list = [sys.executable, "-m", "syncclass", "teacher", "list"]
    line = _refused([*teacher_list, "--data-dir", str(tmp_path)])
    assert "is empty" in line, line

    database.unlink()
    assert "is missing" in _refused(serve_command(free_port(), tmp_path))
    assert not database.exists()


def test_a_damaged_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    _earlier_server(tmp_path)
    database = tmp_path / DATABASE_FILE
    store = SqliteLessonStore(database)  # fold the write-ahead log into the file
    store.close()
    content = bytearray(database.read_bytes())
    assert len(content) >= 3 * 4096
    content[4096:8192] = b"\xa5" * 4096  # a page in the middle overwritten
    database.write_bytes(bytes(content))
    line = _refused(serve_command(free_port(), tmp_path))
    assert "is damaged" in line and "backup" in line, line
    assert database.read_bytes() == bytes(content)

    database.write_bytes(b"this is not a database at all, but it is not empty either" * 100)
    assert "is damaged" in _refused(serve_command(free_port(), tmp_path))


def test_a_data_directory_that_cannot_be_written_is_said_in_one_line(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    line = _refused(serve_command(free_port(), not_a_directory / "data"))
    assert "cannot be written" in line and "--data-dir" in line, line
