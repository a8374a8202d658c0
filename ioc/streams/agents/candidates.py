"""The fusion agent: one region's candidate incidents in order, one at a time, folded into the
incidents staff act on (`ioc.incidents.fusion`); each new version goes to the incidents topic."""

from __future__ import annotations

import faust

from ioc.incidents.composition import FusionRules
from ioc.incidents.fusion import fuse
from ioc.kafka import topics
from ioc.streams.acks import one_by_one
from ioc.streams.context import Rejected, StreamContext


def register(ctx: StreamContext) -> None:
    rules = FusionRules.load(ctx.settings.fusion.rules)
    region = ctx.settings.fusion.region

    async def process(event: faust.EventT) -> None:
        candidate = topics.CANDIDATES.decode(event.value)
        try:
            async with ctx.store.connection() as conn:
                versions = await fuse(conn, candidate, rules, region)
        except LookupError as error:
            raise Rejected(str(error)) from None
        await ctx.publish(versions)

    ctx.agent(ctx.topics.candidates, "fusion", one_by_one(ctx.each_event("fusion", process)))
