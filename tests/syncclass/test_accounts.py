"""Teacher accounts and the admin key: each teacher sees and manages only their own lessons,
the admin all of them; accounts come and go through the API or the command line, and a
removed account's key stops working at once; keys are kept only as hashes; the audit log says
who did what."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.server import ROOT, Server, free_port, launch, serve_command, start_server

from .credentials import add_teacher, admin_key, create_lesson


def syncclass(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncclass", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_each_teacher_manages_their_own_lessons_and_the_admin_all(server: Server) -> None:
    admin = admin_key(server)
    wang, li = add_teacher(server, "wang"), add_teacher(server, "王老师")
    mine = create_lesson(server, wang, "Wang's maths")
    theirs = create_lesson(server, li, "Li's physics")
    assert (mine["owner"], theirs["owner"]) == ("wang", "王老师")

    def listed(key: str) -> set[str]:
        status, body = server.request("GET", "/api/lessons", token=key)
        assert status == 200, body
        return {lesson["id"] for lesson in body["lessons"]}

    assert mine["id"] in listed(wang) and theirs["id"] not in listed(wang)
    assert theirs["id"] in listed(li) and mine["id"] not in listed(li)
    assert {mine["id"], theirs["id"]} <= listed(admin)
    assert not {mine["id"], theirs["id"]} & listed(server.teacher_key)

    # another teacher can neither read, re-link, end nor join the lesson with their key
    path = f"/api/lessons/{mine['id']}"
    for method, suffix in (("GET", ""), ("POST", "/rotate"), ("POST", "/end"), ("GET", "/report")):
        status, body = server.request(method, path + suffix, token=li)
        assert status == 403 and body["error"] == "not_your_lesson", (suffix, body)
    assert server.request("GET", path, token=wang)[1]["state"] == "scheduled"

    # the admin may do all: read with links, end
    status, body = server.request("GET", path, token=admin)
    assert status == 200 and "join_url" in body
    status, body = server.request("POST", path + "/end", token=admin)
    assert status == 200 and body["state"] == "ended"


def test_accounts_through_the_api(server: Server) -> None:
    admin = admin_key(server)
    status, body = server.request("POST", "/api/teachers", token=admin, body={"name": "zhao"})
    assert status == 201 and body["name"] == "zhao" and len(body["key"]) >= 43
    key = body["key"]
    status, again = server.request("POST", "/api/teachers", token=admin, body={"name": "zhao"})
    assert status == 409 and again["error"] == "teacher_exists"
    for name in ("", "has space", "a/b", "admin", "teacher", "x" * 65, 7):
        status, bad = server.request("POST", "/api/teachers", token=admin, body={"name": name})
        assert status == 400 and bad["error"] == "bad_name", name
    status, listing = server.request("GET", "/api/teachers", token=admin)
    names = [t["name"] for t in listing["teachers"]]
    assert names[0] == "teacher" and listing["teachers"][0]["built_in"] and "zhao" in names
    # only the admin manages accounts
    for credential in (server.teacher_key, key):
        status, body = server.request("GET", "/api/teachers", token=credential)
        assert status == 403 and body["error"] == "admin_only"

    lesson = create_lesson(server, key, "Zhao's lesson")
    status, body = server.request("DELETE", "/api/teachers/teacher", token=admin)
    assert status == 409 and body["error"] == "built_in"
    assert server.request("DELETE", "/api/teachers/zhao", token=admin)[0] == 200
    assert server.request("DELETE", "/api/teachers/zhao", token=admin)[0] == 404
    # the key stops at once; the lesson stays, and passes to the admin
    status, body = server.request("GET", "/api/lessons", token=key)
    assert status == 401 and body["error"] == "unauthorized"
    assert server.request("GET", f"/api/lessons/{lesson['id']}", token=key)[0] == 401
    status, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=admin)
    assert status == 200 and body["owner"] == "admin"
    # somebody new under the same name does not inherit it
    status, body = server.request("POST", "/api/teachers", token=admin, body={"name": "zhao"})
    assert status == 201
    assert server.request("GET", f"/api/lessons/{lesson['id']}", token=body["key"])[0] == 403


def test_the_command_line_manages_the_accounts_of_a_running_server(server: Server) -> None:
    data = ["--data-dir", str(server.data_dir)]
    added = syncclass("teacher", "add", "sun", *data)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip().splitlines()[-1]
    assert server.request("GET", "/api/lessons", token=key)[0] == 200
    lesson = create_lesson(server, key, "Sun's lesson")

    listing = syncclass("teacher", "list", *data)
    assert listing.returncode == 0
    rows = dict(line.split("\t", 1) for line in listing.stdout.strip().splitlines())
    assert "sun" in rows and "built in" in rows["teacher"]
    assert key not in listing.stdout

    again = syncclass("teacher", "add", "sun", *data)
    assert again.returncode == 1 and "already" in again.stderr
    builtin = syncclass("teacher", "remove", "teacher", *data)
    assert builtin.returncode == 1 and "teacher key" in builtin.stderr

    removed = syncclass("teacher", "remove", "sun", *data)
    assert removed.returncode == 0, removed.stderr
    assert server.request("GET", "/api/lessons", token=key)[0] == 401
    assert syncclass("teacher", "remove", "sun", *data).returncode == 1

    audit = syncclass("audit", "--lesson", lesson["id"], *data)
    assert audit.returncode == 0
    assert [line.split("\t")[1:4] for line in audit.stdout.strip().splitlines()] == [
        ["sun", "lesson_created", lesson["id"]]
    ]
    everything = syncclass("audit", "--limit", "1000", *data).stdout
    assert "admin\tteacher_added\t-\tsun (from the command line)" in everything
    assert "admin\tteacher_removed\t-\tsun (from the command line)" in everything


def test_keys_are_kept_only_as_hashes(server: Server) -> None:
    key = add_teacher(server, "qian")
    database = Path(server.data_dir) / "syncclass.db"
    stored = b"".join(
        path.read_bytes() for path in database.parent.glob("syncclass.db*") if path.is_file()
    )
    assert key.encode() not in stored
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        (key_hash,) = db.execute("SELECT key_hash FROM accounts WHERE name = 'qian'").fetchone()
    assert len(key_hash) == 32 and key.encode() not in key_hash


def test_the_audit_log_says_who_did_what_to_which_lesson(server: Server) -> None:
    admin = admin_key(server)
    zhou = add_teacher(server, "zhou")
    lesson = create_lesson(server, zhou, "Audited")
    lid = lesson["id"]
    assert (
        server.request("POST", f"/api/lessons/{lid}/rotate", token=lesson["whip_token"])[0] == 200
    )
    assert server.request("POST", f"/api/lessons/{lid}/end", token=admin)[0] == 200
    assert server.request("POST", f"/api/lessons/{lid}/end", token=zhou)[0] == 200  # no-op
    assert server.request("DELETE", "/api/teachers/zhou", token=admin)[0] == 200

    status, body = server.request("GET", f"/api/audit?lesson={lid}", token=admin)
    assert status == 200
    assert [(e["actor"], e["action"]) for e in body["entries"]] == [
        ("zhou", "lesson_created"),
        ("origin token", "link_rotated"),
        ("admin", "lesson_ended"),
    ]
    assert all(e["lesson_id"] == lid and e["at"] > 0 for e in body["entries"])
    _, everything = server.request("GET", "/api/audit?limit=2", token=admin)
    assert [(e["action"], e["detail"]) for e in everything["entries"]][-1] == (
        "teacher_removed",
        "zhou",
    )
    assert len(everything["entries"]) == 2
    assert server.request("GET", "/api/audit?limit=0", token=admin)[0] == 400
    assert server.request("GET", "/api/audit", token=server.teacher_key)[0] == 403


def _banner(command: list[str], port: int, env: dict[str, str] | None = None) -> list[str]:
    """The first three lines a server prints; then stop it, once it serves."""
    process, lines, _ = launch(command, port, lines=3, env=env)
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    return lines


def test_the_admin_key_is_made_once_shown_once_and_can_be_overridden(tmp_path: Path) -> None:
    port = free_port()
    command = serve_command(port, tmp_path)
    first = _banner(command, port)
    assert "admin key (new, kept in" in first[2]
    key = first[2].rsplit(":", 1)[1].strip()
    assert (tmp_path / "admin.key").read_text().strip() == key and len(key) >= 43
    assert (tmp_path / "admin.key").stat().st_mode & 0o777 == 0o600
    teacher = first[1].rsplit(":", 1)[1].strip()
    assert teacher != key
    # later starts say where it is kept, not what it is (logs are read by many)
    second = _banner(command, port)
    assert key not in second[2] and f"kept in {tmp_path / 'admin.key'}" in second[2]

    env = {**os.environ, "SYNCCLASS_ADMIN_KEY": "an-admin-key-from-the-environment"}
    third = _banner(command, port, env)
    assert "from --admin-key" in third[2] and "an-admin-key-from-the-environment" not in third[2]

    overridden = start_server(tmp_path / "other", "--admin-key", "an-admin-key-on-the-command-line")
    try:
        status, _ = overridden.request(
            "GET", "/api/teachers", token="an-admin-key-on-the-command-line"
        )
        assert status == 200
        generated = (tmp_path / "other" / "admin.key").exists()
        assert not generated
    finally:
        overridden.stop()
