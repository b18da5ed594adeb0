"""Who may watch a recording, and the library's listing: the teacher key, the lesson's origin
token and a shared replay link open it; a classroom token does not unless the teacher made it
public; nothing outside the recordings is ever served; files answer range requests."""

from __future__ import annotations

import asyncio
import http.client
import os
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.server import Server

from .lessons import Recorded, end_and_wait, play_out, publish


def _get(
    server: Server, path: str, token: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A raw GET: the path goes out exactly as written (no client-side normalisation)."""
    host, port = urllib.parse.urlsplit(server.url).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request("GET", path, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _link(server: Server, lesson_id: str, credential: str) -> tuple[int, Any]:
    return server.request("POST", f"/api/recordings/{lesson_id}/link", token=credential)


@pytest.fixture
def lesson(recorded: dict[str, Recorded]) -> Recorded:
    return recorded["courseware"]


def test_teacher_origin_and_replay_link_open_a_recording_a_classroom_token_does_not(
    library_server: Server, lesson: Recorded, recorded: dict[str, Recorded]
) -> None:
    server = library_server
    url = lesson.recording["url"]
    origin, classroom = lesson.lesson["whip_token"], lesson.lesson["whep_token"]
    assert _get(server, url)[0] == 401
    assert _get(server, url, token=classroom)[0] == 403
    assert _get(server, f"{url}?token={classroom}")[0] == 403
    assert _get(server, url, token=origin)[0] == 200
    assert _get(server, url, token=server.teacher_key)[0] == 200

    assert _link(server, lesson.lesson["id"], classroom)[0] == 403
    status, link = _link(server, lesson.lesson["id"], server.teacher_key)
    assert status == 201
    replay = link["token"]
    assert link["url"].endswith(f"/recordings?lesson={lesson.lesson['id']}&token={replay}")
    assert _get(server, f"{url}?token={replay}")[0] == 200
    status, info = server.request("GET", f"/api/recordings/{lesson.lesson['id']}", token=replay)
    assert status == 200 and info["title"] == "Courseware lesson"

    # a replay link opens that recording only, and nothing live
    other = recorded["vp8"].recording["url"]
    assert _get(server, f"{other}?token={replay}")[0] == 403
    whip = server.request("POST", f"/whip/{lesson.lesson['id']}", token=replay, raw=b"v=0")
    assert whip[0] == 403
    assert server.request("GET", f"/api/lessons/{lesson.lesson['id']}", token=replay)[0] == 403


def test_public_switch_opens_a_recording_to_everybody_and_closes_it_again(
    library_server: Server, recorded: dict[str, Recorded]
) -> None:
    server = library_server
    lesson = recorded["gap"]
    lesson_id = lesson.lesson["id"]
    url, classroom = lesson.recording["url"], lesson.lesson["whep_token"]
    path = f"/api/recordings/{lesson_id}"
    assert server.request("PATCH", path, token=classroom, body={"public": True})[0] == 403
    assert server.request("PATCH", path, token=server.teacher_key, body={"public": "yes"})[0] == 400
    status, info = server.request("PATCH", path, token=server.teacher_key, body={"public": True})
    assert status == 200 and info["public"] is True
    try:
        assert _get(server, url)[0] == 200
        assert _get(server, url, token=classroom)[0] == 200
        _, listing = server.request("GET", "/api/recordings")
        assert [r["lesson_id"] for r in listing["recordings"]] == [lesson_id]
        assert "token" not in listing["recordings"][0]
    finally:
        server.request("PATCH", path, token=server.teacher_key, body={"public": False})
    assert _get(server, url)[0] == 401
    assert _get(server, url, token=classroom)[0] == 403
    assert server.request("GET", "/api/recordings")[1]["recordings"] == []


def test_files_answer_range_requests_and_sizes_add_up(
    library_server: Server, lesson: Recorded
) -> None:
    server = library_server
    recording = lesson.recording
    key = server.teacher_key
    status, headers, body = _get(server, recording["url"], key, {"Range": "bytes=1000-1999"})
    assert status == 206 and len(body) == 1000
    size = lesson.file.stat().st_size
    assert headers["Content-Range"] == f"bytes 1000-1999/{size}"
    assert body == lesson.file.read_bytes()[1000:2000]

    files = [recording["url"], recording["courseware"]["url"], recording["thumbnail_url"]]
    sizes = [len(_get(server, url, key)[2]) for url in files]
    assert sum(sizes) == recording["size_bytes"]
    assert _get(server, recording["thumbnail_url"], key)[2][:3] == b"\xff\xd8\xff"  # a JPEG


def test_an_empty_suffix_is_416_and_an_unknown_range_unit_is_ignored(
    library_server: Server, lesson: Recorded
) -> None:
    """RFC 9110 §14: ``bytes=-0`` selects no byte (416 with the file's size); a range in a
    unit the server does not know is ignored (200, the whole file)."""
    server, key = library_server, library_server.teacher_key
    url = lesson.recording["url"]
    whole = lesson.file.read_bytes()
    for empty in ("bytes=-0", "bytes=-000", "BYTES=-0"):
        status, headers, body = _get(server, url, key, {"Range": empty})
        assert status == 416, (empty, status)
        assert headers["Content-Range"] == f"bytes */{len(whole)}" and body == b""
    for unknown in ("items=0-9", "pages=1-2", "seconds=-0"):
        status, headers, body = _get(server, url, key, {"Range": unknown})
        assert status == 200, (unknown, status)
        assert body == whole and "Content-Range" not in headers
    # what a player sends keeps working: a suffix, and an open end
    status, headers, body = _get(server, url, key, {"Range": "bytes=-10"})
    assert status == 206 and body == whole[-10:]
    status, headers, body = _get(server, url, key, {"Range": "bytes=0-"})
    assert status == 206 and body == whole


def test_nothing_outside_the_recordings_is_ever_served(
    library_server: Server, recorded: dict[str, Recorded]
) -> None:
    server = library_server
    lesson_id = recorded["vp8"].lesson["id"]
    secrets = [
        (server.data_dir / name).read_bytes()
        for name in ("secret.key", "syncclass.db")
        if (server.data_dir / name).exists()
    ]
    assert secrets
    attempts = [
        f"/recordings/{lesson_id}/../../secret.key",
        f"/recordings/{lesson_id}/..%2F..%2Fsecret.key",
        f"/recordings/{lesson_id}/%2e%2e%2f%2e%2e%2fsyncclass.db",
        f"/recordings/..%2F{lesson_id}/camera.webm",
        f"/recordings/{lesson_id}/recording.json",
        f"/recordings/{lesson_id}/camera.video.rtplog",
        f"/recordings/{lesson_id}/result.json",
        f"/recordings/{lesson_id}/courseware.webm",  # a name it could have, but does not
        "/recordings/%2e%2e/secret.key",
        "/recordings/../syncclass.db",
        f"/recordings/{lesson_id}/camera.webm%00.jpg",
    ]
    for path in attempts:
        status, _, body = _get(server, path, server.teacher_key)
        assert status in (400, 403, 404), (path, status)
        assert not any(secret[:64] in body for secret in secrets), path

    # even a link planted inside a recording's directory is not followed
    directory = server.data_dir / "recordings" / lesson_id
    thumbnail = directory / "thumbnail.jpg"
    kept = thumbnail.read_bytes()
    thumbnail.unlink()
    os.symlink(server.data_dir / "secret.key", thumbnail)
    try:
        status, _, body = _get(server, f"/recordings/{lesson_id}/thumbnail.jpg", server.teacher_key)
        assert status == 404 and secrets[0][:16] not in body
    finally:
        thumbnail.unlink()
        thumbnail.write_bytes(kept)


def test_library_lists_recordings_with_what_a_viewer_chooses_by_and_filters_them(
    library_server: Server, recorded: dict[str, Recorded]
) -> None:
    server = library_server
    status, listing = server.request("GET", "/api/recordings", token=server.teacher_key)
    assert status == 200 and listing["teacher"] is True
    by_id = {r["lesson_id"]: r for r in listing["recordings"]}
    for name, lesson in recorded.items():
        entry = by_id[lesson.lesson["id"]]
        assert entry["title"] == lesson.lesson["title"], name
        assert entry["teacher"] == lesson.lesson["teacher"]
        assert entry["state"] == "ready" and entry["duration_s"] > 9
        assert entry["date"] > 0 and entry["size_bytes"] > 0
        assert entry["thumbnail_url"].startswith(f"/recordings/{lesson.lesson['id']}/")
        assert "?token=" in entry["url"] and _get(server, entry["url"])[0] == 200
    assert listing["total_size_bytes"] >= sum(r["size_bytes"] for r in by_id.values())

    _, found = server.request(
        "GET", "/api/recordings?q=%E7%8E%8B%E8%80%81%E5%B8%88", token=server.teacher_key
    )
    assert {r["title"] for r in found["recordings"]} == {"三年级数学 · 分数", "Courseware lesson"}
    _, found = server.request("GET", "/api/recordings?q=LEVERS", token=server.teacher_key)
    assert [r["teacher"] for r in found["recordings"]] == ["Ms Li"]
    dates = sorted(r["date"] for r in by_id.values())
    _, later = server.request(
        "GET", f"/api/recordings?since={dates[-1] + 1}", token=server.teacher_key
    )
    assert later["recordings"] == []
    _, until = server.request("GET", f"/api/recordings?until={dates[0]}", token=server.teacher_key)
    assert until["recordings"] == []
    assert server.request("GET", "/api/recordings?since=soon", token=server.teacher_key)[0] == 400


async def test_a_recording_is_deleted_by_the_teacher_only_and_not_while_recorded(
    library_server: Server, tmp_path: Path
) -> None:
    server = library_server
    lesson = server.create_lesson("To be deleted")
    lesson_id = lesson["id"]
    publisher = await publish(lesson, 3.0)
    path = f"/api/recordings/{lesson_id}"
    status, body = await asyncio.to_thread(server.request, "DELETE", path, token=server.teacher_key)
    assert status == 409, body  # still being recorded
    await play_out(publisher)
    await publisher.close()
    _, recording = await end_and_wait(server, lesson_id)
    url = recording["url"]
    assert server.request("DELETE", path, token=lesson["whip_token"])[0] == 401
    assert server.request("DELETE", path, token=server.teacher_key)[0] == 200
    assert server.request("DELETE", path, token=server.teacher_key)[0] == 404
    assert _get(server, url, server.teacher_key)[0] == 404
    _, body = server.request("GET", f"/api/lessons/{lesson_id}", token=server.teacher_key)
    assert body["recording"] is None
    assert not (server.data_dir / "recordings" / lesson_id).exists()


async def test_a_lesson_with_record_false_leaves_no_recording(library_server: Server) -> None:
    server = library_server
    lesson = server.create_lesson("Not recorded", record=False)
    publisher = await publish(lesson, 2.0)
    await play_out(publisher)
    status, body = await asyncio.to_thread(
        server.request, "GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key
    )
    assert status == 200 and body["state"] == "live" and body["recording"] is None
    await publisher.close()
    server.request("POST", f"/api/lessons/{lesson['id']}/end", token=server.teacher_key)
    _, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)
    assert body["recording"] is None
    assert not (server.data_dir / "recordings" / lesson["id"]).exists()
