"""The router's object model: it makes its peers and closes them without their calling back,
a peer closing by itself tells it, and each consumer follows the source its owner selects."""

from __future__ import annotations

from media.codec import Codec
from media.consumer import Consumer
from media.network import NetworkConfig
from media.peer import Peer
from media.producer import Producer, Sink
from media.sender_clock import SenderClock
from media.sfu import Sfu

VP8 = Codec("video/VP8", 90000, 96)


class Upstream:
    def request_keyframe(self, ssrc: int) -> None:
        pass

    def send_nack(self, ssrc: int, sequence_numbers: list[int]) -> None:
        pass


def producer(source: str) -> Producer:
    return Producer(f"{source}/video", source, [VP8], [], Upstream(), SenderClock())


def consumer(slot: str, excluded: str | None = None) -> Consumer:
    return Consumer(f"c/{slot}", "video", slot, [Codec("video/VP8", 90000, 100)], excluded)


async def test_consumers_follow_the_source_the_owner_selects() -> None:
    chosen: dict[str, str | None] = {"slot": "feed:a"}

    def select(sink: Sink) -> str | None:
        return chosen.get(sink.source, sink.source)

    sfu = Sfu(NetworkConfig(bind=("127.0.0.1",)))
    router = sfu.router("lesson", select)
    a, b = producer("feed:a"), producer("feed:b")
    router.add_producer(a)
    watcher, own = consumer("slot"), consumer("slot", excluded="feed:b")
    router.add_consumer(watcher)
    router.add_consumer(own)
    assert watcher.producer is a and router.following(watcher) == "feed:a"

    chosen["slot"] = "feed:b"
    router.reselect()
    assert watcher.producer is None  # feed:b publishes nothing yet
    router.add_producer(b)
    assert watcher.producer is b
    assert own.producer is None and router.following(own) is None  # never its own source

    router.retarget(watcher, None)
    assert watcher.producer is None and b.consumers == []
    await sfu.close()
    assert watcher.closed and a.closed and b.closed and not sfu.routers


async def test_closing_the_router_closes_its_peers_without_call_back() -> None:
    sfu = Sfu(NetworkConfig(bind=("127.0.0.1",)))
    router = sfu.router("lesson")
    publisher = router.new_publisher("p", "camera", "teacher")
    subscriber = router.new_subscriber("s", "Room 1", {"video": ("camera",)})
    closed: list[Peer] = []
    publisher.on_close(closed.append)
    subscriber.on_close(closed.append)
    assert router.peers == {publisher, subscriber}

    await subscriber.close()  # by itself: the router lets it go and stays open
    assert closed == [subscriber] and router.peers == {publisher} and not router.closed

    await router.close()
    assert closed == [subscriber, publisher] and publisher.closed
    assert router.closed and not router.peers and "lesson" not in sfu.routers
    await sfu.close()
