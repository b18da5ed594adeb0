"""Talking back, in real Chromium: classroom pages that publish their cameras, raise hands,
go on stage and chat; the teacher's wall of feeds; the full-lesson screen; quality grades of a
classroom on a lossy path; the operator's wall of live lessons and the lesson report.

Chromium runs headless with a fake camera and microphone, each page in its own browser
context. Screenshots go to artifacts/ and, for the README, to docs/.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.test_pages import PHONE, frames_grow, join, until
from tests.server import Server, start_server
from tests.support.browser import open_page, videos
from tests.support.cut import BrowserPath
from tests.support.media import encode_opus_clip, encode_vp8_clip
from tests.support.peers import Classroom, Publisher, whep_subscribe, whip_publish

pytestmark = pytest.mark.timeout(180)

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
FIRST, SECOND = "希望小学 三年级一班", "光明小学 三年级二班"

# What the teacher's speakers play, counted where the page starts a tone: the cue of a hand.
COUNT_TONES = """
(() => {
  window.__tones = 0;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones += 1;
    return start.apply(this, args);
  };
})();
"""

# Packets and decoded frames of one m-line of the page's open receiving connection: index 2 of
# a classroom's offer is the stage's video, index 4 the stage's sound.
SLOT = """
async (index) => {
  const pc = window.__peerConnections.find(
    (p) => p.connectionState === 'connected' && p.getTransceivers().length === 9);
  if (!pc) return null;
  const stats = await pc.getTransceivers()[index].receiver.getStats();
  let found = {packets: 0, frames: 0, energy: 0};
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp') {
      found = {packets: r.packetsReceived || 0, frames: r.framesDecoded || 0,
               energy: r.totalAudioEnergy || 0};
    }
  });
  return found;
}
"""

# Each tile of the teacher's wall: the classroom's name, what its video shows, its grade.
TILES = """
() => [...document.querySelectorAll('#feeds .tile')].map((tile) => {
  const video = tile.querySelector('video');
  return {
    name: tile.dataset.classroom,
    frames: video.getVideoPlaybackQuality().totalVideoFrames,
    width: video.videoWidth,
    height: video.videoHeight,
    grade: tile.dataset.grade,
    hand: tile.dataset.hand === 'true',
    stage: tile.dataset.stage === 'true',
  };
})
"""


def watch_errors(page: Page, errors: list[str]) -> Page:
    """Collect what would show in the page's console as broken: uncaught exceptions and
    anything the Content-Security-Policy blocked."""
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return page


async def teach(browser: Browser, lesson: dict[str, Any]) -> Page:
    """The teacher opens the lesson's teacher view (its speakers watched) and starts it."""
    teacher = await open_page(browser, None)
    await teacher.context.add_init_script(COUNT_TONES)
    await teacher.goto(lesson["teacher_url"])
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "ready")
    await teacher.click("#start")
    await expect(teacher.locator("#state")).to_have_attribute("data-state", "live", timeout=10000)
    return teacher


async def tiles(teacher: Page) -> dict[str, dict[str, Any]]:
    return {tile["name"]: tile for tile in await teacher.evaluate(TILES)}


async def feeds_play(teacher: Page, names: tuple[str, ...], within: float) -> None:
    """Each classroom's tile on the teacher's page presents new frames of its small camera."""
    start = await until(lambda: tiles_with_pictures(teacher, names), "feeds on the wall", within)

    async def moving() -> bool:
        now = await tiles(teacher)
        return all(now[name]["frames"] >= start[name]["frames"] + 10 for name in names)

    await until(moving, "the feeds keep moving", 10)


async def tiles_with_pictures(teacher: Page, names: tuple[str, ...]) -> dict[str, Any] | None:
    now = await tiles(teacher)
    if all(name in now and now[name]["width"] > 0 for name in names):
        return now
    return None


# the classroom page's transceivers (SLOT finds its receiving connection by their number):
# camera, courseware, stage, stage2, stage3 video, then camera, stage, stage2, stage3 sound
STAGE_PICTURE, STAGE_SOUND = 2, 6


async def slot(room: Page, index: int) -> dict[str, int]:
    return dict(await room.evaluate(SLOT, index) or {"packets": 0, "frames": 0, "energy": 0})


async def stage_plays(room: Page, within: float) -> None:
    """The classroom page shows the classroom on stage beside the teacher, picture moving."""
    await expect(room.locator("#room")).to_have_attribute("data-stage", "on", timeout=within * 1000)
    await frames_grow(room, "stage-video", 5, within=within)


async def test_feeds_hands_in_order_stage_and_chat_between_teacher_and_classrooms(
    server: Server, browser: Browser, artifacts: Path
) -> None:
    lesson = server.create_lesson("三年级数学 · 分数的初步认识", teacher="王老师")
    errors: list[str] = []
    teacher = watch_errors(await teach(browser, lesson), errors)
    first = watch_errors(await join(browser, lesson["join_url"], FIRST), errors)
    second = watch_errors(await join(browser, lesson["join_url"], SECOND), errors)

    # both classrooms send their cameras, small, and the teacher's wall shows them moving
    await feeds_play(teacher, (FIRST, SECOND), within=15)
    for name, tile in (await tiles(teacher)).items():
        assert (tile["width"], tile["height"]) == (320, 240), (name, tile)
    for room in (first, second):
        await expect(room.locator("#feed-state")).to_have_text("老师能看到、听到你们")
        assert (await videos(room))["feed-preview"]["visible"]  # the self-view
    await expect(teacher.locator("#classroom-count")).to_have_text("2")
    await expect(teacher.locator("#classroom-max")).to_have_text("/ 30")

    # hands, in the order raised, each with a chime and a flash on the teacher's page
    await first.click("#hand")
    await expect(first.locator("#hand")).to_have_attribute("aria-pressed", "true")
    await expect(teacher.locator("#hands li .hand-name")).to_have_text([FIRST])
    await second.click("#hand")
    await expect(teacher.locator("#hands li .hand-name")).to_have_text([FIRST, SECOND])
    await expect(teacher.locator("#hands li .hand-ago")).to_have_text(["刚刚", "刚刚"])
    await expect(teacher.locator("#hands-count")).to_have_text("2")
    await until(lambda: teacher.evaluate("window.__tones >= 4"), "a chime for each hand", 5)
    for name, order in ((FIRST, "举手 1"), (SECOND, "举手 2")):
        await expect(teacher.locator(f".tile[data-classroom='{name}'] .tile-hand")).to_have_text(
            order
        )
    await expect(second.locator("#hand-label")).to_have_text("已举手 · 点击放下")
    await asyncio.sleep(1.5)  # grades arrive every 2 s
    await teacher.screenshot(path=artifacts / "teacher-feeds.png")
    await teacher.screenshot(path=DOCS / "teacher-feeds.png")

    # the teacher calls the second on stage: the first sees and hears it within 3 s
    called = time.monotonic()
    await teacher.click(f".tile[data-classroom='{SECOND}'] .tile-stage")
    await stage_plays(first, within=3)
    assert time.monotonic() - called < 3.5
    await expect(first.locator("#stage-name")).to_have_text(f"台上：{SECOND}")
    shown = await videos(first)
    assert shown["stage-video"]["visible"] and not shown["stage-video"]["muted"]
    assert shown["stage-video"]["shownWidth"] >= 600  # beside the teacher, not a thumbnail
    assert shown["camera-video"]["visible"]
    sound = await slot(first, STAGE_SOUND)
    await asyncio.sleep(1)
    assert (await slot(first, STAGE_SOUND))["packets"] > sound["packets"] + 20  # its sound too
    await expect(second.locator("#on-stage")).to_be_visible()
    await expect(second.locator("#on-stage")).to_contain_text("你们正在台上")
    await expect(teacher.locator(f".tile[data-classroom='{SECOND}'] .tile-stage")).to_have_text(
        "下台"
    )
    # the classroom on stage never gets its own picture back
    own = await slot(second, STAGE_PICTURE)
    assert own["frames"] == 0, own
    await expect(second.locator("#room")).to_have_attribute("data-stage", "off")
    await first.screenshot(path=artifacts / "classroom-stage.png")
    await second.screenshot(path=artifacts / "classroom-on-stage.png")

    await teacher.click(f".tile[data-classroom='{SECOND}'] .tile-stage")  # off stage
    await expect(first.locator("#room")).to_have_attribute("data-stage", "off", timeout=3000)
    await expect(second.locator("#on-stage")).to_be_hidden()
    stopped = (await videos(first))["stage-video"]["frames"]
    await asyncio.sleep(1.5)
    assert (await videos(first))["stage-video"]["frames"] <= stopped + 2

    # chat: a classroom's message goes to the teacher; the teacher's to every classroom
    await first.click("#chat-toggle")
    await first.fill("#chat-input", "老师，我们算出来了：二分之一！")
    await first.press("#chat-input", "Enter")
    await expect(teacher.locator("#chat-list li").last).to_contain_text(FIRST)
    await expect(teacher.locator("#chat-list li").last).to_contain_text("二分之一")
    await expect(first.locator("#chat-list li").last).to_contain_text("我们")
    await teacher.fill("#chat-input", "很好！请大家翻到第 12 页。")
    await teacher.click("#chat-form [type=submit]")
    await expect(first.locator("#chat-list li").last).to_contain_text("很好！请大家翻到第 12 页。")
    await expect(second.locator("#chat-toast")).to_have_text("老师：很好！请大家翻到第 12 页。")
    await expect(second.locator("#chat-unread")).to_have_text("1")
    # one classroom's message is not shown to the others
    await second.click("#chat-toggle")
    texts = await second.locator("#chat-list li").all_inner_texts()
    assert not any("二分之一" in text for text in texts), texts

    # the teacher lowers the first hand; the second lowers its own
    await teacher.click(f"#hands li[data-classroom='{FIRST}'] .hand-lower")
    await expect(first.locator("#hand")).to_have_attribute("aria-pressed", "false")
    await expect(first.locator("#hand-label")).to_have_text("举手")
    await second.click("#hand")
    await expect(teacher.locator("#hands li")).to_have_count(0)
    await expect(teacher.locator("#hands-empty")).to_be_visible()

    # a classroom that turns its camera off leaves the teacher's wall with its name only
    await first.click("#feed-toggle")
    await expect(first.locator("#feed-state")).to_have_text("老师看不到、听不到你们")
    await expect(teacher.locator(f".tile[data-classroom='{FIRST}']")).to_have_attribute(
        "data-picture", "false", timeout=5000
    )
    await expect(teacher.locator(f".tile[data-classroom='{FIRST}'] .tile-no-picture")).to_have_text(
        "未开摄像头"
    )
    assert errors == []

    # the teacher removes a classroom (移出, after confirming): it leaves the wall and the count
    await expect(teacher.locator("#classroom-count")).to_have_text("2")
    teacher.once("dialog", lambda dialog: dialog.accept())
    await teacher.click(f".tile[data-classroom='{FIRST}'] .tile-remove")
    await expect(teacher.locator(f".tile[data-classroom='{FIRST}']")).to_have_count(0)
    await expect(teacher.locator("#classroom-count")).to_have_text("1")
    # its page, trying to join again, is told it was removed
    await expect(first.locator("body")).to_have_attribute("data-screen", "removed", timeout=30000)
    await expect(first.locator("#message-title")).to_have_text(
        "老师已将本教室移出这节课。如需重新加入，请向老师索取新的链接。"
    )
    await expect(teacher.locator(f".tile[data-classroom='{SECOND}'] .tile-remove")).to_have_text(
        "移出"
    )


async def test_a_fourth_classroom_waits_on_the_full_screen_and_gets_in_when_one_leaves(
    server: Server, browser: Browser, artifacts: Path
) -> None:
    lesson = server.create_lesson("限额三间", max_classrooms=3, record=False)
    teacher = await publish(lesson)
    rooms: list[Classroom] = []
    try:
        for n in range(3):
            rooms.append(await subscribe(lesson, f"村小 {n + 1}"))
        fourth = await join(browser, lesson["join_url"], "第四间教室")
        await expect(fourth.locator("#message-title")).to_have_text("本节课的听讲教室已满")
        await expect(fourth.locator("#message-text")).to_have_text(
            "已有 3/3 间教室在听课。一有空位就会自动让你们进入，请不要关闭本页面。"
        )
        await expect(fourth.locator("body")).to_have_attribute("data-screen", "full")
        await fourth.screenshot(path=artifacts / "classroom-full.png")
        await asyncio.sleep(6)  # it keeps asking, and stays on the full screen meanwhile
        await expect(fourth.locator("body")).to_have_attribute("data-screen", "full")

        left = time.monotonic()
        await rooms.pop().close()
        await expect(fourth.locator("body")).to_have_attribute(
            "data-screen", "playing", timeout=10000
        )
        await frames_grow(fourth, "camera-video", 10, within=5)
        assert time.monotonic() - left < 10
        await fourth.click("#lang")
        await expect(fourth.locator("#hand-label")).to_have_text("Raise hand")
    finally:
        for room in rooms:
            await room.close()
        await teacher.close()


async def test_a_classroom_on_a_lossy_path_is_graded_fair_or_poor_and_the_report_shows_it(
    server: Server, browser: Browser, artifacts: Path
) -> None:
    lesson = server.create_lesson("四年级科学 · 水的三态", teacher="李老师")
    errors: list[str] = []
    teacher = watch_errors(await teach(browser, lesson), errors)
    good = await join(browser, lesson["join_url"], FIRST)
    lossy_path = BrowserPath(loss=0.05)  # 5 % of its datagrams lost, each way
    lossy = await open_page(browser, None)
    await lossy_path.route(lossy)
    await lossy.goto(lesson["join_url"])
    await lossy.fill("#name-input", SECOND)
    await lossy.click("#name-form [type=submit]")
    for room in (good, lossy):
        await frames_grow(room, "camera-video", 10, within=10)
    await asyncio.sleep(6)  # past the first seconds, when a few reports say little

    async def graded() -> dict[str, str] | None:
        grades = {name: tile["grade"] for name, tile in (await tiles(teacher)).items()}
        if grades.get(FIRST) == "good" and grades.get(SECOND) in ("fair", "poor"):
            return grades
        return None

    await until(graded, "the lossy classroom graded fair or poor, the other good", 30)
    lossy_grade = teacher.locator(f".tile[data-classroom='{SECOND}'] .grade")
    await expect(lossy_grade).to_have_text(re.compile("^(一般|较差)$"))
    await expect(teacher.locator(f".tile[data-classroom='{FIRST}'] .grade")).to_have_text("良好")
    assert lossy_path.dropped > 0  # the path really lost packets
    await teacher.screenshot(path=artifacts / "teacher-lossy.png")

    # some interaction for the report: a hand, a turn on stage, then the end of the lesson
    await lossy.click("#hand")
    await expect(teacher.locator("#hands li")).to_have_count(1)
    await teacher.click(f".tile[data-classroom='{FIRST}'] .tile-stage")
    await stage_plays(lossy, within=5)
    on_stage_at = time.time()

    async def sampled_on_stage() -> set[str]:
        # the journal keeps a quality sample of each classroom every 10 s: the report is to
        # hold one of each taken during the turn on stage
        status, body = await asyncio.to_thread(
            server.request, "GET", f"/api/lessons/{lesson['id']}/report", token=server.teacher_key
        )
        assert status == 200, body
        sampled = {
            name
            for name, samples in body["quality"].items()
            if any(sample["at"] >= on_stage_at for sample in samples)
        }
        return sampled if {FIRST, SECOND} <= sampled else set()

    await until(sampled_on_stage, "a quality sample of each classroom on stage", 15, every=0.5)
    await teacher.click(f".tile[data-classroom='{FIRST}'] .tile-stage")
    await lossy.close()
    await asyncio.sleep(2)
    await teacher.click("#end")
    await teacher.click("#end")
    await expect(teacher.locator("#closed")).to_be_visible(timeout=10000)

    report = teacher.locator("#closed-report")
    await expect(report).to_be_visible()
    await report.click()
    await teacher.wait_for_url("**/report")  # the teacher's token left the address bar
    assert "token" not in teacher.url
    await expect(teacher.locator("#report-title")).to_have_text("四年级科学 · 水的三态")
    rows = teacher.locator("#attendance tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.locator("th")).to_have_text([FIRST, SECOND])
    lossy_row = teacher.locator(f"#attendance tr[data-classroom='{SECOND}'] td")
    await expect(lossy_row.nth(4)).to_have_text("1")  # hands raised
    await expect(lossy_row.nth(6)).to_contain_text(re.compile("一般|较差"))  # its grade
    await expect(teacher.locator("#plots .plot")).to_have_count(2)
    for name in (FIRST, SECOND):
        plot = teacher.locator(f"#plots .plot[data-classroom='{name}']")
        await expect(plot.locator("svg.loss polyline, svg.loss circle").first).to_be_attached()
    await expect(teacher.locator("#timeline svg .stage-bar")).to_have_count(1)
    await expect(teacher.locator("#timeline svg .hand-dot")).to_have_count(1)
    await expect(teacher.locator("#recording-link")).to_be_visible(timeout=10000)

    async with teacher.expect_download() as download_info:
        await teacher.click("#csv")
    download = await download_info.value
    saved = Path(await download.path())
    text = await asyncio.to_thread(saved.read_text, encoding="utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    assert [row[0] for row in table[1:]] == [FIRST, SECOND], table
    await teacher.screenshot(path=artifacts / "lesson-report.png", full_page=True)
    await teacher.screenshot(path=DOCS / "lesson-report.png", full_page=True)

    await teacher.click("#lang")
    await expect(teacher.locator("#attendance thead th").first).to_have_text("Classroom")
    await expect(teacher.locator("#report-figures dt").first).to_have_text("Classrooms attended")
    await teacher.set_viewport_size(PHONE)
    overflow = await teacher.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the report is wider than a phone by {overflow} px"
    await teacher.screenshot(path=artifacts / "phone-lesson-report.png", full_page=True)
    assert errors == []


async def publish(lesson: dict[str, Any]) -> Publisher:
    publisher = await whip_publish(
        lesson["whip_url"],
        lesson["whip_token"],
        video=encode_vp8_clip(10.0),
        audio=encode_opus_clip(10.0),
    )
    await publisher.wait_connected()
    return publisher


async def subscribe(lesson: dict[str, Any], name: str) -> Classroom:
    url = f"{lesson['whep_url']}?name={urllib.parse.quote(name)}"
    room = await whep_subscribe(url, lesson["whep_token"], videos=3, audios=2, name=name)
    await room.wait_connected()
    return room


async def test_the_operator_wall_shows_every_live_lesson_and_follows_them(
    tmp_path: Path, browser: Browser, artifacts: Path
) -> None:
    server = start_server(tmp_path / "server")
    publishers: list[Publisher] = []
    rooms: list[Classroom] = []
    try:
        lessons = [
            server.create_lesson("三年级数学 · 分数", teacher="王老师", max_classrooms=30),
            server.create_lesson("五年级英语 · Unit 3", teacher="陈老师", max_classrooms=12),
            server.create_lesson("二年级音乐 · 小星星", teacher="刘老师", max_classrooms=5),
        ]
        server.create_lesson("还没开始的课")  # not live: not on the wall
        for lesson in lessons:
            publishers.append(await publish(lesson))
        names = (["一班", "二班", "三班"], ["英语一班"], [])
        for lesson, rooms_of_lesson in zip(lessons, names, strict=True):
            for name in rooms_of_lesson:
                rooms.append(await subscribe(lesson, name))

        errors: list[str] = []
        wall = watch_errors(await open_page(browser, None), errors)
        await wall.goto(server.url + "/live")
        await expect(wall.locator("#key-card")).to_be_visible()
        await wall.fill("#key-input", server.teacher_key)
        await wall.click("#key-form [type=submit]")
        await expect(wall.locator(".lesson-tile")).to_have_count(3)
        titles = await wall.locator(".lesson-tile .tile-title").all_inner_texts()
        assert sorted(titles) == sorted(lesson["title"] for lesson in lessons)
        maths = wall.locator(f".lesson-tile[data-lesson='{lessons[0]['id']}']")
        await expect(maths.locator(".count-line")).to_have_text("3 / 30")
        await expect(maths).to_contain_text("王老师")
        await expect(maths).to_contain_text("摄像头")
        await expect(maths).to_contain_text("录制中")
        good = maths.locator(".grade[data-grade='good']")
        await expect(good).to_have_text("良好 3", timeout=8000)
        await expect(wall.locator("#summary")).to_have_text("3 节课正在直播 · 4 间教室在线")

        # it follows the lessons by itself: a classroom joins, a lesson ends
        rooms.append(await subscribe(lessons[2], "音乐教室"))
        music = wall.locator(f".lesson-tile[data-lesson='{lessons[2]['id']}']")
        await expect(music.locator(".count-line")).to_have_text("1 / 5", timeout=8000)
        await asyncio.sleep(2.5)  # a grade for the new classroom
        await wall.screenshot(path=artifacts / "live.png")
        await wall.screenshot(path=DOCS / "live.png")
        await wall.set_viewport_size(PHONE)
        overflow = await wall.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the wall is wider than a phone by {overflow} px"
        await wall.screenshot(path=artifacts / "phone-live.png")
        await wall.set_viewport_size({"width": 1366, "height": 768})
        status, _ = server.request(
            "POST", f"/api/lessons/{lessons[1]['id']}/end", token=server.teacher_key
        )
        assert status == 200
        await expect(wall.locator(".lesson-tile")).to_have_count(2, timeout=8000)

        await maths.click()  # a tile opens its lesson's report
        await wall.wait_for_url(f"**/lessons/{lessons[0]['id']}/report")
        await expect(wall.locator("#report-title")).to_have_text("三年级数学 · 分数")
        await expect(wall.locator("#attendance tbody tr")).to_have_count(3)
        await expect(wall.locator("#attendance tbody tr td:nth-child(3)").first).to_have_text(
            "仍在线"
        )
        assert errors == []
    finally:
        for room in rooms:
            await room.close()
        for publisher in publishers:
            await publisher.close()
        server.stop()


# A classroom PC without a camera (or without any input device): the browser finds none.
NO_CAMERA = """
(() => {
  const open = MediaDevices.prototype.getUserMedia;
  MediaDevices.prototype.getUserMedia = function (constraints) {
    if (constraints && constraints.video) {
      return Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));
    }
    return open.call(this, constraints);
  };
})();
"""
NO_DEVICES = """
MediaDevices.prototype.getUserMedia = () =>
  Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));
"""


async def test_classrooms_without_a_camera_still_watch_and_one_with_a_microphone_is_heard(
    server: Server, browser: Browser, artifacts: Path
) -> None:
    lesson = server.create_lesson("没有摄像头的教室", record=False)
    teacher = await teach(browser, lesson)
    rooms = []
    for name, environment in (("只有麦克风", NO_CAMERA), ("什么都没有", NO_DEVICES)):
        room = await open_page(browser, None)
        await room.context.add_init_script(environment)
        await room.goto(lesson["join_url"])
        await room.fill("#name-input", name)
        await room.click("#name-form [type=submit]")
        rooms.append(room)
    heard, silent = rooms
    for room in rooms:  # the lesson plays all the same
        await frames_grow(room, "camera-video", 10, within=10)
        assert not (await videos(room))["feed-preview"]["visible"]
    await expect(heard.locator("#feed-state")).to_have_text("没有摄像头，老师能听到你们")
    await expect(silent.locator("#feed-state")).to_have_text("没有找到摄像头和麦克风")
    await expect(heard.locator("#hand")).to_be_enabled()

    tile = teacher.locator("#feeds .tile[data-classroom='只有麦克风']")
    await expect(tile.locator(".tile-no-picture")).to_have_text("没有画面，只有声音", timeout=10000)
    await expect(tile).to_have_attribute("data-sound", "true")
    await expect(tile.locator(".tile-stage")).to_be_enabled()  # it may answer on stage by voice
    other = teacher.locator("#feeds .tile[data-classroom='什么都没有']")
    await expect(other.locator(".tile-no-picture")).to_have_text("未开摄像头")
    await expect(other.locator(".tile-stage")).to_be_disabled()
    await teacher.screenshot(path=artifacts / "teacher-no-camera.png")
    await heard.screenshot(path=artifacts / "classroom-no-camera.png")
