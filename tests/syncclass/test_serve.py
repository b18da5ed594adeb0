"""``syncclass serve`` as an operator runs it: fast start, a printed key, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import ROOT, free_port, launch, serve_command, start_server


def test_starts_fast_prints_url_and_generated_key_and_keeps_it(tmp_path: Path) -> None:
    port = free_port()
    command = serve_command(port, tmp_path)
    process, lines, elapsed = launch(command, port)
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 0
    assert elapsed < 2.0, f"took {elapsed:.2f} s to serve"
    assert f"http://127.0.0.1:{port}/" in lines[0]
    assert "new" in lines[1]
    key = lines[1].rsplit(":", 1)[1].strip()
    assert len(key) >= 24
    assert (tmp_path / "teacher.key").read_text().strip() == key
    # the next start keeps the same key
    again, second, _ = launch(command, port)
    again.send_signal(signal.SIGTERM)
    assert again.wait(10) == 0
    assert second[1].rsplit(":", 1)[1].strip() == key
    assert "new" not in second[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_peers_connected(tmp_path: Path, sig: int) -> None:
    import asyncio

    from tests.support.peers import whep_subscribe

    server = start_server(tmp_path)
    lesson = server.create_lesson("Stop me")

    async def join_and_stop() -> str:
        classroom = await whep_subscribe(lesson["whep_url"], lesson["whep_token"])
        await classroom.wait_connected()
        assert server.status()["peers"] == 1
        code = server.stop(sig)
        assert code == 0, server.log()
        for _ in range(100):
            if classroom.pc.connectionState in ("closed", "failed"):
                break
            await asyncio.sleep(0.1)
        state = classroom.pc.connectionState
        await classroom.close(delete=False)
        return state

    assert asyncio.run(join_and_stop()) in ("closed", "failed")
    log = server.log()
    assert "Traceback" not in log, log
    assert "closing 1 lesson" in log and "stopped" in log


def test_bad_option_is_refused_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncclass",
            "serve",
            "--ice-ports",
            "9000-8000",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--ice-ports" in result.stderr


def test_environment_sets_options(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(tmp_path, env={"SYNCCLASS_MAX_CLASSROOMS": "7"}, port=port)
    try:
        assert server.create_lesson("Env")["max_classrooms"] == 7
    finally:
        server.stop()


def test_announced_address_and_port_range_in_the_answer(tmp_path: Path) -> None:
    import asyncio

    from tests.support.peers import new_peer_connection, post_offer

    low = free_port() // 2 * 2
    server = start_server(
        tmp_path, "--ice-announce", "203.0.113.7", "--ice-ports", f"{low}-{low + 40}"
    )

    async def answer() -> str:
        pc = new_peer_connection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        lesson = server.create_lesson("NAT")
        result = await post_offer(lesson["whep_url"], lesson["whep_token"], pc.localDescription.sdp)
        await pc.close()
        assert result.status == 201
        return result.text

    try:
        sdp = asyncio.run(answer())
    finally:
        server.stop()
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert candidates
    for line in candidates:
        parts = line.split()
        assert parts[4] == "203.0.113.7"
        assert low <= int(parts[5]) <= low + 40
    assert "127.0.0.1" not in "\n".join(candidates)
