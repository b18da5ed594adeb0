"""Fuzzing what clients send: SDP offers to WHIP and WHEP, the JSON body of every endpoint that
reads one, and the lesson event messages. Each entry point gets at least 10,000 cases; none
may be answered with a 5xx or leave an unhandled exception in the server's log, and a lesson
running beside (a publisher and a classroom that decodes) keeps decoding frames throughout.

Hypothesis draws the cases in batches, sent concurrently over one HTTP session from an event
loop in a background thread, which also runs the lesson beside.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from syncclass.app import create_app
from syncclass.config import Config
from tests.server import ROOT, Server, start_server
from tests.signaling.test_tokens_http import recvonly_offer
from tests.support.peers import new_peer_connection

pytestmark = pytest.mark.timeout(600)

CASES = 10_000  # per entry point
BATCH = 20  # cases drawn per Hypothesis example and sent at once
ADMIN_KEY = "fuzz-admin-key-0123456789"
CRASH_MARKS = ("Traceback", "Error handling request", "Exception in callback", "Unhandled")
# longest pause in the lesson beside: a stall of a second would be visible on the big screen
MAX_FRAME_GAP_S = 1.0

T = TypeVar("T")


def fuzz_settings(cases: int) -> settings:
    return settings(
        max_examples=-(-cases // BATCH),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        # no shrinking: each request takes a server's time, and the assertion names the case
        phases=[Phase.explicit, Phase.generate],
        print_blob=True,
    )


# --- the server, the loop and the lesson beside ------------------------------------------------


@dataclass
class Harness:
    """The server, an event loop in a thread that sends the cases, and the lesson beside."""

    server: Server
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    http: aiohttp.ClientSession | None = None
    beside: dict[str, Any] = field(default_factory=dict)
    watcher: subprocess.Popen[str] | None = None
    frames: list[tuple[float, int]] = field(default_factory=list)  # (when, decoded so far)
    cases: dict[str, int] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)  # 2xx answers among the cases
    pending: concurrent.futures.Future[Any] | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:  # noqa: ASYNC109
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, None]) -> None:
        """Send a batch while Hypothesis draws the next one. A batch's failure is raised when
        the next one is submitted; its message names the case that failed."""
        try:
            self.drain()
        except BaseException:
            coro.close()
            raise
        self.pending = asyncio.run_coroutine_threadsafe(coro, self.loop)

    def drain(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result(120)

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self.http is not None
        return self.http

    def start(self) -> None:
        self.http = self.run(self._session())
        self.beside = self.server.create_lesson("Beside", record=True)
        self.watcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.watched_lesson",
                self.beside["whip_url"],
                self.beside["whip_token"],
                f"{self.beside['whep_url']}?name=Beside",
                self.beside["whep_token"],
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.watcher.stdout is not None
        assert self.watcher.stdout.readline().strip() == "ready"
        threading.Thread(target=self._read_frames, daemon=True).start()

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=BATCH),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    def _read_frames(self) -> None:
        assert self.watcher is not None and self.watcher.stdout is not None
        for line in self.watcher.stdout:
            when, count = line.split()
            self.frames.append((float(when), int(count)))

    def stop(self) -> None:
        if self.watcher is not None:
            assert self.watcher.stdin is not None
            self.watcher.stdin.close()
            try:
                self.watcher.wait(15)
            except subprocess.TimeoutExpired:
                self.watcher.kill()
        if self.http is not None:
            self.run(self.http.close())

    def longest_stall(self, since: float) -> float:
        """The longest time in which the classroom beside decoded no frame, since ``since``."""
        samples = [(t, n) for t, n in self.frames if t >= since]
        longest, last_change, last_count = 0.0, samples[0][0], samples[0][1]
        for when, count in samples[1:]:
            if count != last_count:
                last_change, last_count = when, count
            longest = max(longest, when - last_change)
        return longest

    def check(self, entry: str, since: float, log_from: int) -> None:
        """After fuzzing ``entry``: enough cases, the server up and clean, the lesson beside
        decoding all along."""
        assert self.cases.get(entry, 0) >= CASES, (entry, self.cases)
        assert self.server.process.poll() is None
        log = self.server.log()[log_from:]
        assert not [mark for mark in CRASH_MARKS if mark in log], log[-4000:]
        assert self.watcher is not None and self.watcher.poll() is None
        time.sleep(0.3)  # the watcher's latest lines
        stall = self.longest_stall(since)
        assert stall <= MAX_FRAME_GAP_S, f"the lesson beside stalled for {stall:.1f} s"
        decoded = self.frames[-1][1] - next(n for t, n in self.frames if t >= since)
        assert decoded >= 0.8 * 30 * (self.frames[-1][0] - since), decoded


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    server = start_server(
        tmp_path_factory.mktemp("fuzz"),
        "--admin-key",
        ADMIN_KEY,
        # a fuzzer from one address is what the limits are for; here they would stop it
        "--rate-limit-lessons",
        "off",
        "--rate-limit-media",
        "off",
        "--rate-limit-messages",
        "off",
    )
    harness = Harness(server)
    thread = threading.Thread(target=harness.loop.run_forever, daemon=True)
    thread.start()
    try:
        harness.start()
        yield harness
        print(f"\nfuzz cases {harness.cases}, answered 2xx {harness.created}")
    finally:
        try:
            harness.stop()
        finally:
            harness.loop.call_soon_threadsafe(harness.loop.stop)
            thread.join(10)
            server.stop()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_no_server_error(status: int, text: str, what: str) -> None:
    assert status < 500, f"{what} -> {status}: {text[:300]}"


# --- SDP offers --------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-5, 300),
    st.sampled_from([0, 65535, 65536, 2**31, 2**32, 2**63, 10**30]),
)
WORDS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=24,
)
CODECS = st.sampled_from(
    ["VP8", "H264", "opus", "rtx", "red", "ulpfec", "VP9", "AV1", "PCMU", "G722", "x", ""]
)
EXTENSION_URIS = st.sampled_from(
    [
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "urn:3gpp:video-orientation",
        "",
    ]
)


def _line(template: str, *parts: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map(lambda values: template.format(*values))


SDP_LINES = st.one_of(
    _line(
        "m={} {} UDP/TLS/RTP/SAVPF {}",
        st.sampled_from(["audio", "video", "application"]),
        NUMBERS,
        st.lists(NUMBERS, max_size=4).map(lambda p: " ".join(map(str, p))),
    ),
    st.just("m=application 9 UDP/DTLS/SCTP webrtc-datachannel"),
    _line("a=rtpmap:{} {}/{}", NUMBERS, CODECS, NUMBERS),
    _line("a=rtpmap:{} {}/{}/{}", NUMBERS, CODECS, NUMBERS, NUMBERS),
    _line(
        "a=fmtp:{} apt={};packetization-mode={};profile-level-id={}",
        NUMBERS,
        NUMBERS,
        NUMBERS,
        WORDS,
    ),
    _line(
        "a=rtcp-fb:{} {}", NUMBERS, st.sampled_from(["nack", "nack pli", "ccm fir", "goog-remb"])
    ),
    _line("a=extmap:{} {}", NUMBERS, EXTENSION_URIS),
    _line("a=ssrc:{} cname:{}", NUMBERS, WORDS),
    _line("a=ssrc-group:FID {} {}", NUMBERS, NUMBERS),
    _line("a=mid:{}", WORDS),
    _line("a=group:BUNDLE {}", WORDS),
    _line("a=msid:{} {}", WORDS, WORDS),
    _line("a=setup:{}", st.sampled_from(["actpass", "active", "passive", "holdconn", "x"])),
    _line("a=ice-ufrag:{}", WORDS),
    _line("a=ice-pwd:{}", WORDS),
    _line("a=fingerprint:{} {}", st.sampled_from(["sha-256", "sha-1", "md5", "x"]), WORDS),
    _line(
        "a=candidate:{} 1 udp {} 127.0.0.1 {} typ {}",
        WORDS,
        NUMBERS,
        NUMBERS,
        st.sampled_from(["host", "srflx", "relay", "x"]),
    ),
    _line("a=rid:{} {}", WORDS, st.sampled_from(["send", "recv", ""])),
    _line("a=simulcast:send {}", WORDS),
    _line("a=sctp-port:{}", NUMBERS),
    _line("b=AS:{}", NUMBERS),
    st.sampled_from(
        [
            "a=sendrecv",
            "a=sendonly",
            "a=recvonly",
            "a=inactive",
            "a=rtcp-mux",
            "a=rtcp-rsize",
            "a=end-of-candidates",
            "a=ice-options:trickle",
            "c=IN IP4 0.0.0.0",
            "c=IN IP6 ::1",
            "t=0 0",
            "s=-",
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "a=",
            "m=",
            "=",
        ]
    ),
    WORDS,
)

MUTATIONS = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 120)),
    st.tuples(st.just("duplicate"), st.integers(0, 120)),
    st.tuples(st.just("swap"), st.integers(0, 120), st.integers(0, 120)),
    st.tuples(st.just("insert"), st.integers(0, 120), SDP_LINES),
    st.tuples(st.just("replace"), st.integers(0, 120), SDP_LINES),
    st.tuples(st.just("number"), st.integers(0, 120), NUMBERS),
    st.tuples(st.just("truncate"), st.integers(0, 8000)),
    st.tuples(st.just("flip"), st.integers(0, 8000), st.integers(1, 127)),
    st.tuples(st.just("newlines"), st.sampled_from(["\n", "\r", "\r\n\r\n", " \r\n", "\x00\r\n"])),
)


def mutate(offer: str, mutations: list[tuple[Any, ...]]) -> str:
    lines = offer.split("\r\n")
    text = None
    for mutation in mutations:
        kind, *args = mutation
        if text is not None:  # a character-level mutation made it text: keep it as text
            lines = text.split("\r\n")
            text = None
        at = args[0] % max(1, len(lines)) if isinstance(args[0], int) else 0
        if kind == "delete" and lines:
            del lines[at]
        elif kind == "duplicate" and lines:
            lines.insert(at, lines[at])
        elif kind == "swap" and lines:
            other = args[1] % len(lines)
            lines[at], lines[other] = lines[other], lines[at]
        elif kind == "insert":
            lines.insert(at, args[1])
        elif kind == "replace" and lines:
            lines[at] = args[1]
        elif kind == "number" and lines and not lines[at].startswith("a=candidate"):
            lines[at] = re.sub(r"\d+", str(args[1]), lines[at], count=1)
        elif kind == "truncate":
            text = "\r\n".join(lines)[: args[0]]
        elif kind == "flip":
            joined = "\r\n".join(lines)
            if joined:
                pos = args[0] % len(joined)
                text = joined[:pos] + chr(ord(joined[pos]) ^ args[1]) + joined[pos + 1 :]
        elif kind == "newlines":
            text = "\r\n".join(lines).replace("\r\n", args[0])
    return text if text is not None else "\r\n".join(lines)


async def publishing_offers() -> list[str]:
    """Real offers of the shapes publishers send: camera (VP8 or H.264, with RTX) and sound,
    sound only, video only."""
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    from tests.support.peers import _codec_preferences

    offers = []
    for video, audio, codec in (
        (True, True, "VP8"),
        (True, True, "H264"),
        (False, True, ""),
        (True, False, "VP8"),
    ):
        pc = new_peer_connection()
        if video:
            transceiver = pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
            transceiver.setCodecPreferences(_codec_preferences("video", codec))
        if audio:
            pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offers.append(pc.localDescription.sdp)
        await pc.close()
    return offers


async def receiving_offers() -> list[str]:
    """Real offers of the shapes classrooms send: several video slots and sound."""
    offers = [await recvonly_offer()]
    for videos, audios in ((3, 2), (1, 0), (0, 1)):
        pc = new_peer_connection()
        for _ in range(videos):
            pc.addTransceiver("video", direction="recvonly")
        for _ in range(audios):
            pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        offers.append(pc.localDescription.sdp)
        await pc.close()
    return offers


def offer_cases(bases: list[str], queries: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    # the offers as they are would all be answered (the costly case): they come mutated
    mutated = st.tuples(st.sampled_from(bases), st.lists(MUTATIONS, min_size=1, max_size=5)).map(
        lambda case: mutate(*case)
    )
    offers = st.one_of(
        mutated,
        mutated,
        mutated,
        st.text(max_size=300),
        st.text(max_size=200).map(lambda t: "v=0\r\n" + t),
    )
    content_types = st.sampled_from(["application/sdp"] * 8 + ["text/plain", "application/json"])
    return st.tuples(offers, queries, content_types)


WHIP_QUERIES = st.one_of(
    st.just(""),
    st.just("?source=courseware"),
    st.sampled_from(["camera", "feed", "feed:x", "stage", ""]).map(lambda s: f"?source={s}"),
    WORDS.map(lambda s: f"?source=feed&name={s}"),
)
WHEP_QUERIES = st.one_of(
    st.just(""),
    WORDS.map(lambda s: f"?name={s}"),
    WORDS.map(lambda s: f"?source=feed:{s}"),
    st.sampled_from(["?source=", "?name=&source=camera", "?name=%00", "?name=" + "x" * 65]),
)


async def post_offers(
    harness: Harness, entry: str, url: str, token: str, cases: list[tuple[str, str, str]]
) -> None:
    http = harness.session

    async def one(offer: str, query: str, content_type: str) -> None:
        target = url + query
        headers = {**auth(token), "Content-Type": content_type}
        async with http.post(
            target, data=offer.encode("utf-8", "surrogatepass"), headers=headers
        ) as response:
            text = await response.text()
            assert_no_server_error(response.status, text, f"POST {target} {offer[:2000]!r}")
            location = response.headers.get("Location")
        if response.status == 201 and location:
            harness.created[entry] = harness.created.get(entry, 0) + 1
            async with http.delete(harness.server.url + location, headers=auth(token)) as gone:
                # 404: a case sent at the same time took the source or the name over
                assert gone.status in (200, 404), await gone.text()

    await asyncio.gather(*(one(*case) for case in cases))
    harness.cases[entry] = harness.cases.get(entry, 0) + len(cases)


def fuzz_offers(harness: Harness, entry: str, bases: list[str], queries: Any) -> None:
    lesson = harness.server.create_lesson(f"Fuzz {entry}", record=False)
    url, token = lesson[f"{entry}_url"], lesson[f"{entry}_token"]

    @fuzz_settings(CASES)
    @given(st.lists(offer_cases(bases, queries), min_size=BATCH, max_size=BATCH))
    def fuzz(cases: list[tuple[str, str, str]]) -> None:
        harness.submit(post_offers(harness, entry, url, token, cases))

    fuzz()
    harness.drain()


def test_whip_offers(harness: Harness) -> None:
    since, log_from = time.monotonic(), len(harness.server.log())
    bases = harness.run(publishing_offers())
    fuzz_offers(harness, "whip", bases, WHIP_QUERIES)
    harness.check("whip", since, log_from)


def test_whep_offers(harness: Harness) -> None:
    since, log_from = time.monotonic(), len(harness.server.log())
    bases = harness.run(receiving_offers())
    fuzz_offers(harness, "whep", bases, WHEP_QUERIES)
    harness.check("whep", since, log_from)


# --- JSON bodies -------------------------------------------------------------------------------

FIELDS = [
    "title",
    "max_classrooms",
    "record",
    "teacher",
    "public",
    "name",
    "type",
    "text",
    "on",
    "raised",
    "classroom",
    "token",
    "key",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, 1, -1, 30, 1000, 1001, 2**53, -(2**63)])
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "x" * 201, "数学", "\x00", "\ud800"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=5,
)
OBJECTS = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), JSON_VALUES, max_size=5)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from([0, -1, 1e308, "Beside", "\ud800", []])
)
# the fields the endpoints know, with values of about the right kind: nearly valid bodies
# get past the first checks
FIELD_VALUES = {
    "title": WORDS | SCALARS,
    "max_classrooms": st.integers(-2, 1002) | SCALARS,
    "record": st.booleans() | SCALARS,
    "teacher": WORDS | SCALARS,
    "public": st.booleans() | SCALARS,
    "name": st.from_regex(r"[\w.-]{1,70}", fullmatch=True) | WORDS | SCALARS,
}
SHAPED_OBJECTS = st.lists(
    st.one_of(*(st.tuples(st.just(k), v) for k, v in FIELD_VALUES.items())), max_size=3
).map(dict)
JSON_BODIES = st.one_of(
    SHAPED_OBJECTS.map(_dumps),
    SHAPED_OBJECTS.map(_dumps),
    OBJECTS.map(_dumps),
    JSON_VALUES.map(_dumps),
    st.binary(max_size=120),
    st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(1, 6000).map(lambda n: b'{"max_classrooms": 1' + b"0" * n + b', "title": "x"}'),
    st.integers(16_000, 17_000).map(lambda n: b'{"title": "' + b"x" * n + b'"}'),
)


@dataclass
class Endpoint:
    method: str
    path: str
    token: str
    reads_json: bool


def json_routes() -> list[tuple[str, str]]:
    """Every route that takes a request body, from the application itself, so that a new
    endpoint is fuzzed without being listed here; WHIP/WHEP take SDP and have their tests."""
    import tempfile

    with tempfile.TemporaryDirectory() as data:
        app = create_app(Config(data_dir=Path(data), admin_key=ADMIN_KEY))
        routes = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.method in ("POST", "PUT", "PATCH") and route.resource is not None
        }
    return sorted(r for r in routes if not r[1].startswith(("/whip/", "/whep/")))


def endpoints(harness: Harness) -> list[Endpoint]:
    """The body-taking routes with their path filled in and the credential that opens them
    (a teacher's or the admin's key), and whether each reads its body as JSON."""
    server = harness.server
    own = server.create_lesson("Fuzz JSON", record=False)
    found = []
    for method, canonical in json_routes():
        # a recording needs a recorded lesson: the one beside; other routes take their own
        lesson = harness.beside if canonical.startswith("/api/recordings/") else own
        path = canonical.replace("{lesson_id}", lesson["id"])
        path = re.sub(r"\{[^}]+\}", "fuzz", path)
        for token in (server.teacher_key, ADMIN_KEY):
            status, body = server.request(method, path, token=token, raw=b"{")
            if status not in (401, 403):
                break
        reads_json = isinstance(body, dict) and body.get("error") == "malformed_json"
        found.append(Endpoint(method, path, token, reads_json))
    return found


async def send_bodies(harness: Harness, endpoint: Endpoint, bodies: list[bytes]) -> None:
    http = harness.session
    url = harness.server.url + endpoint.path
    headers = {**auth(endpoint.token), "Content-Type": "application/json"}
    key = f"{endpoint.method} {endpoint.path}"

    async def one(body: bytes) -> None:
        async with http.request(endpoint.method, url, data=body, headers=headers) as response:
            text = await response.text()
            assert_no_server_error(response.status, text, f"{endpoint.method} {url} {body[:300]!r}")
            if response.status >= 400:
                assert response.content_type == "application/json", text[:200]
                assert json.loads(text)["error"], text[:200]
            else:
                harness.created[key] = harness.created.get(key, 0) + 1

    await asyncio.gather(*(one(body) for body in bodies))
    harness.cases[key] = harness.cases.get(key, 0) + len(bodies)


async def send_to_each(harness: Harness, endpoints: list[Endpoint], bodies: list[bytes]) -> None:
    await asyncio.gather(*(send_bodies(harness, endpoint, bodies) for endpoint in endpoints))


def fuzz_bodies(harness: Harness, endpoints: list[Endpoint], cases: int) -> None:
    """``cases`` bodies to each of ``endpoints``. Each batch drawn goes to every endpoint:
    drawing the bodies costs this process about as much as sending them, and each endpoint
    gets its ``cases`` from the same strategy all the same."""

    @fuzz_settings(cases)
    @given(st.lists(JSON_BODIES, min_size=BATCH, max_size=BATCH))
    def fuzz(bodies: list[bytes]) -> None:
        harness.submit(send_to_each(harness, endpoints, bodies))

    fuzz()
    harness.drain()


def test_json_bodies(harness: Harness) -> None:
    since, log_from = time.monotonic(), len(harness.server.log())
    found = endpoints(harness)
    reading = [e for e in found if e.reads_json]
    # the lesson API, teacher accounts, recordings: whatever else appears is fuzzed as well
    assert {"POST /api/lessons", "POST /api/teachers"} <= {
        f"{e.method} {e.path}" for e in reading
    }, found
    fuzz_bodies(harness, reading, CASES)
    fuzz_bodies(harness, [e for e in found if not e.reads_json], 2 * BATCH)
    for endpoint in reading:
        harness.cases["json"] = min(
            harness.cases.get("json", CASES), harness.cases[f"{endpoint.method} {endpoint.path}"]
        )
    harness.check("json", since, log_from)


# --- event messages ----------------------------------------------------------------------------

MESSAGE_TYPES = ["hand", "stage", "chat", "stats", "ping", "auth", "lesson", "pong", "", "x"]
NUMBERS_OR_NOT = st.floats() | st.integers() | SCALARS
MESSAGE_FIELDS = {
    "raised": st.booleans() | SCALARS,
    "on": st.booleans() | SCALARS,
    "classroom": st.just("Beside") | WORDS | SCALARS,
    "text": st.text(max_size=520) | SCALARS,
    "bitrate_kbps": NUMBERS_OR_NOT,
    "loss": NUMBERS_OR_NOT,
    "jitter_ms": NUMBERS_OR_NOT,
    "rtt_ms": NUMBERS_OR_NOT,
    "freezes": NUMBERS_OR_NOT,
    "fps": NUMBERS_OR_NOT,
    "token": SCALARS,
    "name": SCALARS,
    "extra": JSON_VALUES,
}
TYPED = st.tuples(
    st.sampled_from(MESSAGE_TYPES) | SCALARS,
    st.lists(st.one_of(*(st.tuples(st.just(k), v) for k, v in MESSAGE_FIELDS.items())), max_size=4),
    st.booleans(),  # escaped as ASCII: a lone surrogate then travels in a valid text frame
).map(lambda m: json.dumps({"type": m[0], **dict(m[1])}, ensure_ascii=m[2]))
MAX_MESSAGE_BYTES = 4096  # what the server takes in one event message
OVERSIZED = json.dumps({"type": "chat", "text": "x" * 5000})
MESSAGES = st.tuples(
    st.sampled_from(["teacher", "classroom"]),
    st.one_of(
        *[TYPED] * 12,
        JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False)),
        st.text(max_size=100),
        st.binary(max_size=60),
        st.integers(1, 3000).map(lambda n: '{"type": "chat", "text": ' + "[" * n + "]" * n + "}"),
        st.integers(0, 30).map(lambda n: OVERSIZED if n == 0 else '{"type": "ping"}'),
    ),
)


def pings_in(message: str | bytes) -> int:
    """1 if the server answers this message with a pong (a JSON object of type ping)."""
    if isinstance(message, bytes):
        return 0
    try:
        parsed = json.loads(message)
    except (ValueError, RecursionError):
        return 0
    return int(isinstance(parsed, dict) and parsed.get("type") == "ping")


@dataclass
class EventSocket:
    """One participant's event socket, read all along so the server never waits on it."""

    url: str
    harness: Harness
    ws: aiohttp.ClientWebSocketResponse | None = None
    pongs: int = 0
    expected: int = 0
    too_big: int = 0  # closed by the server for a message over its size limit
    reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.ws = await self.harness.session.ws_connect(self.url)
        self.pongs = self.expected = 0
        self.reader = asyncio.get_running_loop().create_task(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "pong":
                self.pongs += 1

    async def send(self, message: str | bytes) -> None:
        assert self.ws is not None and self.reader is not None
        size = len(
            message.encode("utf-8", "surrogatepass") if isinstance(message, str) else message
        )
        if isinstance(message, str) and _lone(message):  # cannot go as a text frame
            message = message.encode("utf-8", "surrogatepass")
        if isinstance(message, bytes):
            await self.ws.send_bytes(message)
        else:
            await self.ws.send_str(message)
        if size >= MAX_MESSAGE_BYTES:
            # the server closes a socket that sends more than it takes; a client opens anew.
            # At exactly the limit aiohttp refuses an uncompressed frame and takes a
            # compressed one, so there either is right.
            done, _ = await asyncio.wait(
                {self.reader}, timeout=10 if size > MAX_MESSAGE_BYTES else 1
            )
            if done:
                assert self.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG, self.ws.close_code
                self.too_big += 1
                await self.open()
                return
            assert size == MAX_MESSAGE_BYTES, "a message over the limit was taken"
        self.expected += pings_in(message)

    async def settle(self) -> None:
        """Wait until the server has answered everything sent so far."""
        await self.send('{"type": "ping"}')
        deadline = time.monotonic() + 20
        while self.pongs < self.expected:
            assert self.ws is not None and not self.ws.closed, self.ws and self.ws.close_code
            assert time.monotonic() < deadline, (self.pongs, self.expected)
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader


def _lone(text: str) -> bool:
    """Text with a lone surrogate cannot go as a text frame: it goes as bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def test_event_messages(harness: Harness) -> None:
    since, log_from = time.monotonic(), len(harness.server.log())
    lesson = harness.beside
    base = harness.server.url.replace("http", "ws", 1) + f"/api/lessons/{lesson['id']}/events"
    sockets = {
        "teacher": EventSocket(f"{base}?token={lesson['whip_token']}", harness),
        "classroom": EventSocket(f"{base}?token={lesson['whep_token']}&name=Beside", harness),
    }
    for socket in sockets.values():
        harness.run(socket.open())

    async def send(messages: list[tuple[str, str | bytes]]) -> None:
        for who, message in messages:
            await sockets[who].send(message)
        for socket in sockets.values():
            await socket.settle()
        harness.cases["events"] = harness.cases.get("events", 0) + len(messages)

    @fuzz_settings(CASES)
    @given(st.lists(MESSAGES, min_size=BATCH, max_size=BATCH))
    def fuzz(messages: list[tuple[str, str | bytes]]) -> None:
        harness.submit(send(messages))

    try:
        fuzz()
        harness.drain()
    finally:
        for socket in sockets.values():
            harness.run(socket.close())
    harness.check("events", since, log_from)
