"""The teacher page with a classroom camera (RTSP) instead of the browser's: the teacher
gives its address, the page shows what the server says of it, and a classroom page in
Chromium plays it, shows 老师正在重新连接 while the camera is away, and plays on by itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.e2e.test_pages import frames_grow, join
from tests.server import Server
from tests.support.browser import open_page
from tests.support.rtsp_camera import RtspCamera, clip_pipeline, make_clip

pytestmark = pytest.mark.timeout(150)

PASSWORD = "教室-pw@1"


async def test_the_teacher_picks_the_classroom_camera_and_a_classroom_plays_it(
    server: Server, browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    clip = make_clip(tmp_path, 40)
    camera = RtspCamera(clip_pipeline(clip), tmp_path, ("cam", PASSWORD))
    camera.start()
    lesson = server.create_lesson("教室摄像机", record=False)
    teacher = await open_page(browser, lesson["teacher_url"])
    try:
        await expect(teacher.locator("#state")).to_have_attribute("data-state", "ready")
        await teacher.select_option("#source-select", "pulled")
        await expect(teacher.locator("#pulled-state")).to_have_text("尚未设置教室摄像机。")
        await expect(teacher.locator("#start")).to_be_hidden()
        await expect(teacher.locator("#mic-toggle")).to_be_hidden()  # the sound is the camera's
        await teacher.fill("#pulled-url", camera.url())
        await teacher.click("#pulled-use")
        await expect(teacher.locator("#pulled-state")).to_have_text(
            "教室摄像机直播中", timeout=20000
        )
        await expect(teacher.locator("#state")).to_have_attribute("data-state", "live")
        await expect(teacher.locator("#pulled-current")).to_have_text(
            f"当前摄像机：rtsp://cam:***@127.0.0.1:{camera.port}/live"
        )
        await expect(teacher.locator("#pulled-url")).to_have_value("")
        await teacher.screenshot(path=str(artifacts / "teacher-rtsp.png"))

        room = await join(browser, lesson["join_url"], "光明小学")
        await frames_grow(room, "camera-video", 25, within=20)
        await expect(room.locator("body")).to_have_attribute("data-screen", "playing")

        camera.stop()
        await expect(room.locator("#message-title")).to_have_text(
            "老师正在重新连接…", timeout=15000
        )
        await expect(teacher.locator("#pulled-state")).to_contain_text("教室摄像机连接中断")
        camera.start()
        await expect(room.locator("body")).to_have_attribute(
            "data-screen", "playing", timeout=30000
        )
        await frames_grow(room, "camera-video", 25, within=15)
        assert await room.evaluate("window.__sameDocument === true")

        # a reload keeps the choice, and does not publish the browser's camera
        await teacher.reload()
        await expect(teacher.locator("#source-select")).to_have_value("pulled")
        await expect(teacher.locator("#pulled-state")).to_have_text("教室摄像机直播中")
        content = await teacher.content()
        assert PASSWORD not in content and "%40" not in content
    finally:
        camera.stop()
        server.request("POST", f"/api/lessons/{lesson['id']}/end", token=server.teacher_key)
