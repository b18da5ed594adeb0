"""The SFU forwards a teacher's packets to classrooms that decode them: real aiortc peers over
WHIP/WHEP against a server process, on loopback only, with every peer on one shared UDP port
and with a port for each."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server import ROOT, Server, start_server
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Classroom, Publisher, whep_subscribe, whip_publish

FPS = 30


@pytest.fixture(scope="module")
def server(server_in_each_port_mode: Server) -> Server:
    return server_in_each_port_mode


@pytest.fixture(scope="module")
def clip() -> tuple[list, list]:  # type: ignore[type-arg]
    return encode_vp8_clip(4.0, fps=FPS, gop=FPS), encode_opus_clip(4.0)


async def publish(lesson: dict, clip: tuple[list, list]) -> Publisher:  # type: ignore[type-arg]
    video, audio = clip
    publisher = await whip_publish(
        lesson["whip_url"], lesson["whip_token"], video=video, audio=audio
    )
    await publisher.wait_connected()
    return publisher


async def join(lesson: dict, **kwargs: object) -> Classroom:  # type: ignore[type-arg]
    classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"], **kwargs)  # type: ignore[arg-type]
    await classroom.wait_connected()
    return classroom


@pytest.fixture
async def closing() -> AsyncIterator[list]:  # type: ignore[type-arg]
    peers: list = []  # type: ignore[type-arg]
    yield peers
    for peer in peers:
        await peer.close()


async def test_classrooms_decode_continuously_and_late_joiner_starts_on_keyframe(
    server: Server,
    clip: tuple[list, list],
    closing: list,  # type: ignore[type-arg]
) -> None:
    lesson = server.create_lesson("Fan-out")
    publisher = await publish(lesson, clip)
    closing.append(publisher)
    classrooms = [await join(lesson, name=f"room-{i}") for i in range(3)]
    closing.extend(classrooms)
    for classroom in classrooms:
        await classroom.wait_for_frames(1, timeout=5)
    # ten seconds, every second: each classroom decodes new video and audio frames
    for _ in range(10):
        before = [(c.video_frames, c.audio_frames) for c in classrooms]
        await asyncio.sleep(1)
        for c, (video, audio) in zip(classrooms, before, strict=True):
            assert c.video_frames - video >= FPS * 0.7, f"{c.name} video stalled"
            assert c.audio_frames - audio >= 35, f"{c.name} audio stalled"
    for c in classrooms:
        assert c.video[0].unreadable == 0
        assert c.video[0].width == 320 and c.video[0].height == 240

    late = await join(lesson, name="late")
    closing.append(late)
    await late.wait_for_frames(10, timeout=5)
    assert late.video[0].first_frame_keyframe is True
    assert (
        server.request("GET", f"/api/lessons/{lesson['id']}", token=server.teacher_key)[1][
            "classrooms"
        ]
        == 4
    )


async def test_lossy_classroom_recovers_by_nack_and_others_are_unaffected(
    server: Server,
    clip: tuple[list, list],
    closing: list,  # type: ignore[type-arg]
) -> None:
    lesson = server.create_lesson("Lossy link")
    publisher = await publish(lesson, clip)
    closing.append(publisher)
    clean = await join(lesson, name="clean")
    lossy = await join(lesson, name="lossy", drop_rate=0.02, seed=7)
    closing.extend([clean, lossy])
    await clean.wait_for_frames(1, timeout=5)
    await lossy.wait_for_frames(1, timeout=5)
    assert publisher.video_track is not None
    sent_before = publisher.video_track.frames_sent
    clean_before, lossy_before = clean.video_frames, lossy.video_frames
    await asyncio.sleep(8)
    sent = publisher.video_track.frames_sent - sent_before
    assert lossy.dropped > 20, "the lossy link dropped nothing: the test proves nothing"
    assert clean.video_frames - clean_before >= 0.98 * sent - 2
    assert lossy.video_frames - lossy_before >= 0.98 * sent - 2


async def test_origin_leaves_and_returns_classrooms_resume_without_reconnecting(
    server: Server,
    clip: tuple[list, list],
    closing: list,  # type: ignore[type-arg]
) -> None:
    lesson = server.create_lesson("Teacher reloads")
    first = await publish(lesson, clip)
    classroom = await join(lesson, name="steady")
    closing.append(classroom)
    await classroom.wait_for_frames(30, timeout=5)
    assert await first.close() == 200
    await asyncio.sleep(2)
    paused_at = classroom.video_frames
    await asyncio.sleep(1)
    assert classroom.video_frames - paused_at <= 2, "frames kept coming with no teacher"
    second = await publish(lesson, clip)
    closing.append(second)
    await classroom.wait_for_frames(paused_at + 60, timeout=5)
    assert classroom.pc.connectionState == "connected"
    assert classroom.audio_frames > 0


async def test_teacher_publishing_again_replaces_the_old_session(
    server: Server,
    clip: tuple[list, list],
    closing: list,  # type: ignore[type-arg]
) -> None:
    lesson = server.create_lesson("Two tabs")
    first = await publish(lesson, clip)
    closing.append(first)
    classroom = await join(lesson)
    closing.append(classroom)
    await classroom.wait_for_frames(10, timeout=5)
    second = await publish(lesson, clip)  # e.g. a reload before the old session timed out
    closing.append(second)
    count = classroom.video_frames
    await classroom.wait_for_frames(count + 60, timeout=5)
    for _ in range(50):
        if first.pc.connectionState in ("closed", "failed"):
            break
        await asyncio.sleep(0.1)
    assert first.pc.connectionState in ("closed", "failed")


async def test_server_neither_decodes_nor_encodes(
    tmp_path: Path,
    clip: tuple[list, list],  # type: ignore[type-arg]
) -> None:
    probe = tmp_path / "codecs.log"
    probe.touch()
    server = start_server(
        tmp_path / "data",
        prelude="import tests.support.codec_probe",
        env={"SYNCCLASS_CODEC_PROBE": str(probe)},
    )
    peers: list = []  # type: ignore[type-arg]
    try:
        lesson = server.create_lesson("No transcoding")
        peers.append(await publish(lesson, clip))
        classrooms = [await join(lesson) for _ in range(2)]
        peers.extend(classrooms)
        for classroom in classrooms:
            await classroom.wait_for_frames(60, timeout=8)
            assert classroom.audio_frames > 50
    finally:
        for peer in peers:
            await peer.close()
        server.stop()
    assert probe.read_text() == "", probe.read_text()


def test_codec_probe_sees_aiortc_codecs(tmp_path: Path) -> None:
    """The probe above is not blind: in a process that does decode and encode, it says so."""
    probe = tmp_path / "codecs.log"
    code = (
        "import tests.support.codec_probe\n"
        "from aiortc import RTCRtpCodecParameters, rtcrtpreceiver, rtcrtpsender\n"
        "vp8 = RTCRtpCodecParameters(mimeType='video/VP8', clockRate=90000, payloadType=96)\n"
        "rtcrtpreceiver.get_decoder(vp8).decode\n"
        "rtcrtpsender.get_encoder(vp8)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "SYNCCLASS_CODEC_PROBE": str(probe)},
        check=True,
    )
    text = probe.read_text()
    assert "get_decoder video/VP8" in text and "get_encoder video/VP8" in text
    assert "CodecContext.create libvpx r" in text
