"""Closed peer connections are given back in small collections, not left for Python's rare
full one."""

from __future__ import annotations

import gc
import weakref

from syncclass.cycles import COLLECT_AFTER, COLLECT_WITHIN_S, CycleCollector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def a_cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def test_a_few_closed_peers_are_collected_at_once() -> None:
    closed = [0]
    collector = CycleCollector(lambda: closed[0])
    gone = [a_cycle() for _ in range(COLLECT_AFTER)]
    gc.disable()  # only the collector may free them here
    try:
        assert all(ref() is not None for ref in gone)
        closed[0] = COLLECT_AFTER - 1
        assert not collector.due(0.0)
        closed[0] = COLLECT_AFTER
        assert collector.due(0.1)
        await collector.collect()
        assert all(ref() is None for ref in gone)
        assert not collector.due(0.2)  # nothing closed since
    finally:
        gc.enable()


async def test_one_closed_peer_waits_a_little_for_its_collection() -> None:
    closed = [0]
    collector = CycleCollector(lambda: closed[0])
    closed[0] = 1
    assert not collector.due(100.0)
    assert not collector.due(100.0 + COLLECT_WITHIN_S / 2)
    assert collector.due(100.0 + COLLECT_WITHIN_S)
    await collector.collect()
    assert collector.collections == 1
    assert not collector.due(200.0)
