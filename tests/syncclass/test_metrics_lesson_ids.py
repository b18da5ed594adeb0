"""``/metrics`` is open to whoever reaches the port: by default it names no lesson (totals
only); ``--metrics-lesson-ids`` adds the per-lesson series, labelled with lesson ids."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server import Server, start_server
from tests.signaling.test_tokens_http import sendonly_offer
from tests.support.peers import post_offer

PER_LESSON = (
    "syncclass_lesson_classrooms",
    "syncclass_lesson_max_classrooms",
    "syncclass_lesson_classrooms_by_quality",
)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = start_server(tmp_path_factory.mktemp("labelled"), "--metrics-lesson-ids")
    yield instance
    instance.stop()


async def _live_lesson(server: Server, title: str) -> str:
    """A live lesson (the teacher's offer makes it live) whose id is in nothing else."""
    lesson = server.create_lesson(title, max_classrooms=7)
    result = await post_offer(lesson["whip_url"], lesson["whip_token"], await sendonly_offer())
    assert result.status == 201, result.text
    return str(lesson["id"])


def _scrape(server: Server) -> tuple[str, dict[str, float]]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return text, values


async def test_metrics_name_no_lesson_by_default(server: Server) -> None:
    lesson_id = await _live_lesson(server, "Unnamed in metrics")
    text, values = _scrape(server)
    assert values["syncclass_lessons_live"] >= 1
    assert lesson_id not in text
    assert not any(line.startswith(PER_LESSON) for line in text.splitlines()), text
    # what a dashboard needs without ids: totals, and classrooms by grade
    for grade in ("good", "fair", "poor"):
        assert values[f"syncclass_classrooms_by_quality{{grade={grade}}}"] == 0


async def test_metrics_lesson_ids_puts_them_back(labelled: Server) -> None:
    lesson_id = await _live_lesson(labelled, "Named in metrics")
    text, values = _scrape(labelled)
    assert values[f"syncclass_lesson_max_classrooms{{lesson={lesson_id}}}"] == 7
    assert values[f"syncclass_lesson_classrooms{{lesson={lesson_id}}}"] == 0
    assert f"syncclass_lesson_classrooms_by_quality{{grade=good,lesson={lesson_id}}}" in values
