"""Pages the people on call: each active incident's chain (`escalation`), to whoever holds the
step's role now (`roster`), through their contacts in order until one takes the page.

A pass every `oncall.poll_s` in the alerts worker (one worker at a time, under an advisory lock).
Every attempt is recorded (`oncall_pages`: the page, the person, the channel, the outcome), so a
page is sent once, a first channel's failure and the second channel tried both show on the
console, and a role nobody holds at that moment shows too. Each page carries the incident's
signed link (`console.link_key`), bound to the person, so one tap acknowledges and ends the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ioc.alerts.channels import summary_vi
from ioc.config import Settings
from ioc.console.links import LinkMaker
from ioc.dispatch.escalation import DuePage, due_pages
from ioc.dispatch.roster import Roster
from ioc.incidents import lifecycle
from ioc.models import FusedIncident, FusedStatus
from ioc.models.base import deterministic_id, utc_now
from ioc.models.kinds import KINDS
from ioc.notify.channels import DeliveryFailed, Message, MessageChannel, configured
from ioc.store.locks import alone
from ioc.store.writer import Store

log = logging.getLogger(__name__)
LOCK = "ioc.dispatch.pager"
NOBODY = "—"


@dataclass(frozen=True)
class PagerSummary:
    delivered: int
    failed: int

    def __bool__(self) -> bool:
        return bool(self.delivered or self.failed)


class OnCallPager:
    def __init__(
        self, roster: Roster, channels: Mapping[str, MessageChannel], links: LinkMaker
    ) -> None:
        self.roster = roster
        self.channels = channels
        self.links = links

    async def run_pass(self, store: Store) -> PagerSummary:
        async with store.connection() as conn:
            return await self.run_once(conn)

    async def run_once(self, conn: AsyncConnection) -> PagerSummary:
        """One pass; nothing when another worker holds the pass."""
        return await alone(conn, LOCK, lambda: self._pass(conn)) or PagerSummary(0, 0)

    async def _pass(self, conn: AsyncConnection) -> PagerSummary:
        async with conn.transaction():
            active = await lifecycle.listed(
                conn, [FusedStatus.OPEN, FusedStatus.ACKNOWLEDGED], limit=10_000
            )
        now = utc_now()
        due = {
            incident.id: (incident, pages)
            for incident in active
            if (chain := self.roster.chains.get(incident.severity))
            and (pages := due_pages(incident, chain, now))
        }
        if not due:
            return PagerSummary(0, 0)
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "SELECT DISTINCT incident_id, page_key FROM oncall_pages"
                " WHERE incident_id = ANY(%s)",
                (list(due),),
            )
            done = {(row[0], row[1]) for row in await cur.fetchall()}
        delivered = failed = 0
        for incident, pages in due.values():
            for page in pages:
                if (incident.id, page.key) in done:
                    continue
                people = self.roster.on_duty(page.role, now)
                if not people:
                    role = self.roster.roles[page.role].name
                    await _record(conn, incident, page, NOBODY, "none", f"không ai trực {role}")
                    failed += 1
                for person in people:
                    if await self._page(conn, incident, page, person):
                        delivered += 1
                    else:
                        failed += 1
        return PagerSummary(delivered, failed)

    async def _page(
        self, conn: AsyncConnection, incident: FusedIncident, page: DuePage, person: str
    ) -> bool:
        """Each contact in turn until one takes the page; every attempt recorded."""
        message = self.message(incident, page, person)
        for channel_name, address in self.roster.people[person].reachable():
            channel = self.channels.get(channel_name)
            if channel is None:
                await _record(conn, incident, page, person, channel_name, "kênh chưa cấu hình")
                continue
            try:
                await channel.send(address, message)
            except DeliveryFailed as error:
                log.warning("page %s of %s to %s: %s", page.key, incident.id, person, error)
                await _record(conn, incident, page, person, channel_name, str(error))
                continue
            await _record(conn, incident, page, person, channel_name, None)
            return True
        return False

    def message(self, incident: FusedIncident, page: DuePage, person: str) -> Message:
        role = self.roster.roles[page.role].name
        place = f" · {incident.district}" if incident.district else ""
        again = " (nhắc lại)" if page.round > 1 else ""
        held = " Đã nhận nhưng chưa xử lý xong." if page.cycle else ""
        lines = [
            f"{role}: {KINDS[incident.kind].title_vi} · {incident.title}{place} · "
            f"{incident.sources} nguồn.{held} Bước {page.step}{again}."
        ]
        if link := self.links.link(incident.id, person):
            lines.append(f"Nhận sự cố: {link}")
        return Message(
            id=deterministic_id("page", incident.id, page.key, person),
            reference=incident.id,
            subject=summary_vi(incident),  # as the team alerts say it
            text="\n".join(lines),
            status_vi="Cần tiếp nhận",
        )

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


async def _record(
    conn: AsyncConnection,
    incident: FusedIncident,
    page: DuePage,
    person: str,
    channel: str,
    error: str | None,
) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO oncall_pages (incident_id, page_key, person, role, channel, ok, error)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (incident.id, page.key, person, page.role, channel, error is None, error),
        )


async def pages_of(conn: AsyncConnection, incident_id: str) -> list[dict[str, Any]]:
    """Every attempt to page someone about the incident, oldest first (for the console)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT page_key, person, role, channel, ok, error, at FROM oncall_pages"
            " WHERE incident_id = %s ORDER BY at, person",
            (incident_id,),
        )
        return await cur.fetchall()


def pager_from_settings(settings: Settings) -> OnCallPager | None:
    """The pager the settings ask for: None without a roster."""
    if settings.oncall.roster is None:
        return None
    return OnCallPager(
        Roster.load(settings.oncall.roster), configured(settings.notify), LinkMaker(settings)
    )
