"""The lessons REST API: create, read, list, end; bad input gets a clear 4xx."""

from __future__ import annotations

import pytest

from tests.server import Server, start_server


def test_create_returns_everything_a_teacher_needs(server: Server) -> None:
    lesson = server.create_lesson("语文 三年级", max_classrooms=5, record=False)
    assert lesson["title"] == "语文 三年级"
    assert lesson["state"] == "scheduled"
    assert lesson["max_classrooms"] == 5 and lesson["record"] is False
    base = server.url
    assert lesson["whip_url"] == f"{base}/whip/{lesson['id']}"
    assert lesson["whep_url"] == f"{base}/whep/{lesson['id']}"
    assert lesson["teacher_url"].startswith(f"{base}/lessons/{lesson['id']}/teach?token=")
    assert lesson["teacher_url"].endswith(lesson["whip_token"])
    assert lesson["join_url"].endswith(lesson["whep_token"])
    status, page = server.request("GET", lesson["join_url"][len(base) :])
    assert status == 200
    listed = server.request("GET", "/api/lessons", token=server.teacher_key)[1]["lessons"]
    assert listed[0]["id"] == lesson["id"]  # newest first
    assert "whip_token" not in listed[0]


def test_defaults(server: Server) -> None:
    lesson = server.create_lesson("Defaults")
    assert lesson["max_classrooms"] == 30 and lesson["record"] is True


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b'{"title": ""}', "bad_title"),
        (b'{"title": 42}', "bad_title"),
        (b'{"title": "' + b"x" * 201 + b'"}', "bad_title"),
        (b'{"title": "a", "max_classrooms": 0}', "bad_max_classrooms"),
        (b'{"title": "a", "max_classrooms": true}', "bad_max_classrooms"),
        (b'{"title": "a", "max_classrooms": "3"}', "bad_max_classrooms"),
        (b'{"title": "a", "record": "yes"}', "bad_record"),
        (b'{"title": "a", "titel": "typo"}', "unknown_field"),
        (b"\xff\xfe", "malformed_json"),
    ],
)
def test_bad_lesson_bodies_get_400_and_create_nothing(
    server: Server, raw: bytes, code: str
) -> None:
    count = len(server.request("GET", "/api/lessons", token=server.teacher_key)[1]["lessons"])
    status, body = server.request("POST", "/api/lessons", token=server.teacher_key, raw=raw)
    assert status == 400, body
    assert body["error"] == code and body["message"]
    assert (
        len(server.request("GET", "/api/lessons", token=server.teacher_key)[1]["lessons"]) == count
    )


def test_unknown_lesson_is_404(server: Server) -> None:
    status, body = server.request("GET", "/api/lessons/nope", token=server.teacher_key)
    assert status == 404 and body["error"] == "no_such_lesson"
    status, body = server.request("POST", "/api/lessons/nope/end", token=server.teacher_key)
    assert status == 404


def test_end_is_idempotent_and_withdraws_links(server: Server) -> None:
    lesson = server.create_lesson("Short")
    for _ in range(2):
        status, body = server.request(
            "POST", f"/api/lessons/{lesson['id']}/end", token=lesson["whip_token"]
        )
        assert status == 200 and body["state"] == "ended" and body["ended_at"]
    _, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)
    assert body["state"] == "ended" and "join_url" not in body


def test_lessons_survive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = start_server(tmp_path)
    try:
        lesson = first.create_lesson("Kept")
    finally:
        assert first.stop() == 0
    second = start_server(tmp_path)
    try:
        status, body = second.request(
            "GET", f"/api/lessons/{lesson['id']}", token=lesson["whep_token"]
        )
        assert status == 200 and body["title"] == "Kept"
    finally:
        second.stop()
