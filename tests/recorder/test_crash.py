"""A server killed mid-lesson (kill -9) loses at most the last couple of seconds of the
recording: at its next start it finalises what was recorded by itself, and a teacher who
carries on with the lesson ends up with one recording of all of it. Restarted on the same
data directory and port, the lesson is still live and its links still work: the teacher's
page, and the join link, on which a classroom watches again once the teacher republishes."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.server import free_port, start_server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import whep_subscribe

from .lessons import FPS, download, play_out, publish, request, wait_ready
from .playback import play

# long enough for a recording of many keyframes and packet-log flushes; the clip (30 s, shared
# with the disk tests' lessons) is still playing when the server is killed
KILL_AFTER_S = 10.0


async def test_kill_9_mid_lesson_then_restart_recovers_the_recording(tmp_path: Path) -> None:
    encode_vp8_clip(30.0, fps=FPS, gop=FPS)
    encode_opus_clip(30.0)
    encode_vp8_clip(5.0, fps=FPS, gop=FPS)
    encode_opus_clip(5.0)
    data, port = tmp_path / "data", free_port()
    server = start_server(data, port=port)
    try:
        lesson = server.create_lesson("Crash", teacher="王老师")
        publisher = await publish(lesson, 30.0)
        room = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="一班")
        await room.wait_for_frames(30, timeout=10)
        track = publisher.video_track
        assert track is not None and track.started_at is not None
        await asyncio.sleep(track.started_at + KILL_AFTER_S - time.monotonic())
        sent_before_kill = track.frames_sent
        server.stop(signal.SIGKILL)
        await publisher.close(delete=False)
        await room.close(delete=False)
    finally:
        server.stop()

    restarted = start_server(data, port=port)
    try:
        # nobody asks for anything: the server recovers the recording on its own
        recovered_after, recording = await wait_ready(restarted, lesson["id"], within=30.0)
        status, body = restarted.request(
            "GET", f"/api/lessons/{lesson['id']}", token=restarted.teacher_key
        )
        assert body["state"] == "live"  # the lesson itself was not ended
        playback = play(download(restarted, recording["url"], tmp_path / "recovered.webm"))
        assert playback.duration_s >= KILL_AFTER_S - 2.0, playback.duration_s
        assert playback.unreadable == 0, playback.unreadable_at
        numbers = {n for _, n, _ in playback.frames}
        assert set(range(round((KILL_AFTER_S - 2.0) * FPS))) <= numbers, sent_before_kill
        assert playback.audio_seconds >= KILL_AFTER_S - 2.0
        sent_s = sent_before_kill / FPS
        lost = sent_s - playback.duration_s
        print(f"recovered in {recovered_after:.1f} s; lost {lost:.2f} s of {sent_s:.1f} s")

        # the links given out before the crash still work: the teacher's page, and the join
        # link, on which a classroom watches again once the teacher has republished
        for page in (lesson["teacher_url"], lesson["join_url"]):
            status, _ = await request(restarted, "GET", page.removeprefix(restarted.url))
            assert status == 200, page
        for token in (lesson["whip_token"], lesson["whep_token"]):
            status, body = await request(
                restarted, "GET", f"/api/lessons/{lesson['id']}", token=token
            )
            assert (status, body["state"]) == (200, "live"), body
        room = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="一班")
        # the teacher reconnects and finishes the lesson: one recording of both parts
        again = await publish(lesson, 5.0)
        await room.wait_for_frames(30, timeout=10)
        await play_out(again)
        await again.close()
        await room.close()
        restarted.request("POST", f"/api/lessons/{lesson['id']}/end", token=restarted.teacher_key)
        _, final = await wait_ready(restarted, lesson["id"], within=15.0)
        whole = play(download(restarted, final["url"], tmp_path / "whole.webm"))
        assert whole.duration_s > playback.duration_s + 5.0
        assert whole.unreadable == 0, whole.unreadable_at
        assert len({(round(t), n) for t, n, _ in whole.frames}) >= playback.distinct_frames() + 145
    finally:
        restarted.stop()
    logs = list((data / "recordings" / lesson["id"]).glob("*.rtplog"))
    assert logs == [], "packet logs are dropped once the lesson's recording is final"


pytestmark = pytest.mark.timeout(180)
