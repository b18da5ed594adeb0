"""The SFU of one server process: a router per lesson, and the network settings they share."""

from __future__ import annotations

import logging

from .network import Network, NetworkConfig
from .router import Router, Select, same_source
from .traffic import TrafficTotals

logger = logging.getLogger(__name__)


class Sfu:
    def __init__(self, network: NetworkConfig) -> None:
        self.network = Network(network)
        self.routers: dict[str, Router] = {}
        self._retired = TrafficTotals()  # lessons closed

    def router(self, router_id: str, select: Select = same_source) -> Router:
        """The open router ``router_id``, made now (with ``select``) if there is none."""
        router = self.routers.get(router_id)
        if router is None or router.closed:
            router = self.routers[router_id] = Router(
                router_id, self.network, select=select, on_close=self._router_closed
            )
        return router

    def get(self, router_id: str) -> Router | None:
        return self.routers.get(router_id)

    def _router_closed(self, router: Router) -> None:
        """A router closed (its owner closed it): what it counted stays in the totals."""
        if self.routers.get(router.id) is router:
            del self.routers[router.id]
        self._retired.add(router.traffic())

    def traffic(self) -> TrafficTotals:
        """Everything the server has received and sent since it started."""
        totals = TrafficTotals()
        totals.add(self._retired)
        for router in self.routers.values():
            totals.add(router.traffic())
        return totals

    async def close(self) -> None:
        for router in list(self.routers.values()):
            await router.close()
        self.network.close()
