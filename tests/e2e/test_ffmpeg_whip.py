"""An external publisher nobody here wrote: FFmpeg's WHIP muxer sends H.264 + Opus."""

from __future__ import annotations

import asyncio

from tests.server import Server
from tests.support.ffmpeg_whip import publish_with_ffmpeg
from tests.support.peers import whep_subscribe


async def test_ffmpeg_whip_h264_reaches_a_classroom_that_decodes_it(server: Server) -> None:
    lesson = server.create_lesson("FFmpeg")
    # the classroom waits first, as it would for a lesson about to start
    classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="waiting")
    try:
        await classroom.wait_connected()
        publishing = asyncio.create_task(
            asyncio.to_thread(publish_with_ffmpeg, lesson["whip_url"], lesson["whip_token"], 8.0)
        )
        await classroom.wait_for_frames(30, timeout=15)
        _, body = server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)
        assert body["state"] == "live"
        late = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], name="late")
        try:
            await late.wait_for_frames(10, timeout=5)
            assert late.video[0].first_frame_keyframe is True
        finally:
            await late.close()
        sent = await publishing
        video = classroom.video[0]
        assert video.unreadable == 0
        assert classroom.audio_frames > 100
        # everything after the first keyframe the classroom caught was decoded
        assert video.frames >= 0.95 * (sent - video.frame_numbers[0]), (video.frames, sent)
    finally:
        await classroom.close()
