"""``syncclass course``: the operator makes a course, its term and its links from the command
line, with the same checks as the API, on the database the server uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncclass.cli import main
from syncclass.courses import SqliteCourses
from syncclass.store import DATABASE_FILE, SqliteLessonStore


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_a_term_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ("--data-dir", str(tmp_path), "--timezone", "Asia/Shanghai")
    code, out, _ = _run(
        capsys, "course", "add", "三年级数学", "--owner", "wang", "--classroom", "石门小学", *where
    )
    assert code == 0
    assert "/room?token=" in out and "石门小学\thttp" in out
    code, out, _ = _run(capsys, "course", "list", *where)
    course_id = out.split("\t")[0]
    code, out, _ = _run(
        capsys, "course", "schedule", course_id, "--weekly", "mon,wed", "--from", "2030-03-04",
        "--until", "2030-03-24", "--except", "2030-03-11..2030-03-13", "--time", "10:00",
        "--minutes", "40", *where,
    )  # fmt: skip
    assert code == 0, out
    assert out.splitlines()[0].startswith("2030-03-04 Mon 10:00")
    assert len(out.splitlines()) == 4
    code, _, err = _run(
        capsys, "course", "schedule", course_id, "--date", "2030-03-06", "--time", "10:30",
        "--minutes", "40", *where,
    )  # fmt: skip
    assert code == 1 and "clashes with '三年级数学'" in err
    code, _, err = _run(
        capsys, "course", "schedule", course_id, "--date", "2030-02-30", "--time", "10:30",
        "--minutes", "40", *where,
    )  # fmt: skip
    assert code == 2 and "not a date" in err
    code, out, _ = _run(
        capsys, "course", "revoke-link", course_id, "--classroom", "石门小学", *where
    )
    assert code == 0 and "石门小学\trevoked" in out
    store = SqliteLessonStore(tmp_path / DATABASE_FILE)
    try:
        courses = SqliteCourses(store)
        assert len(courses.lessons(course_id)) == 4
        link = courses.get(course_id).link("石门小学")  # type: ignore[union-attr]
        assert link is not None and link.revoked
    finally:
        store.close()
