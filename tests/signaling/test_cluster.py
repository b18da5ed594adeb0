"""Where a classroom of a lesson joins (`choose`), and the credential servers of a directory
show each other: made with the shared secret, for one lesson, soon expired."""

from __future__ import annotations

import pytest

from signaling.cluster import choose
from signaling.cluster_credentials import LIFETIME_S, ClusterCredentialError, ClusterCredentials
from signaling.contracts import ServerEntry

HOME = ServerEntry("home:1", "http://home:1", None, False, 10)


def edge(name: str, region: str | None, load: int) -> ServerEntry:
    return ServerEntry(name, f"http://{name}", region, True, load)


def test_a_classroom_goes_to_the_least_loaded_edge_of_its_region() -> None:
    servers = [HOME, edge("a1", "a", 5), edge("a2", "a", 3), edge("b1", "b", 0)]
    assert choose(HOME, servers, "a", spill_load=200).id == "a2"
    assert choose(HOME, servers, "b", spill_load=200).id == "b1"


def test_without_an_edge_of_its_region_it_stays_home_until_the_home_is_loaded() -> None:
    servers = [HOME, edge("a1", "a", 5)]
    assert choose(HOME, servers, None, spill_load=200) is HOME
    assert choose(HOME, servers, "c", spill_load=200) is HOME
    assert choose(HOME, servers, "c", spill_load=10).id == "a1"
    # a loaded home still keeps it when every edge is as loaded
    assert choose(HOME, [HOME, edge("a1", "a", 12)], None, spill_load=10) is HOME


def test_servers_that_are_no_edges_are_never_chosen() -> None:
    other_home = ServerEntry("x", "http://x", "a", False, 0)
    assert choose(HOME, [HOME, other_home], "a", spill_load=1) is HOME


def test_a_credential_opens_its_lesson_only_and_expires() -> None:
    now = [1000.0]
    credentials = ClusterCredentials("s" * 20, clock=lambda: now[0])
    credential = credentials.mint("edge:1", "L1")
    assert credentials.check(credential, "L1").server == "edge:1"
    with pytest.raises(ClusterCredentialError, match="another lesson"):
        credentials.check(credential, "L2")
    with pytest.raises(ClusterCredentialError, match="signature"):
        ClusterCredentials("t" * 20, clock=lambda: now[0]).check(credential, "L1")
    body, _, signature = credential.partition(".")
    with pytest.raises(ClusterCredentialError):
        credentials.check(body + "x." + signature, "L1")
    for junk in ("", "a", "a.b.c", "!." + signature, "x" * 600):
        with pytest.raises(ClusterCredentialError):
            credentials.check(junk, "L1")
    now[0] += LIFETIME_S + 1
    with pytest.raises(ClusterCredentialError, match="expired"):
        credentials.check(credential, "L1")
