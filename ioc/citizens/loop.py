"""The alerts worker's pass over the reports whose reporters are kept informed.

Every `citizens.poll_s` one worker (an advisory lock keeps two from racing) reads each kept
contact's report, in the state of the incident it ended up in, sends the notices that state
calls for and records each outcome. A failed notice is tried again on later passes, up to
`citizens.max_attempts`, and a report's later notices wait for it, so news never arrives out of
order. Delivery is at least once: a crash between a send and its record sends it again, with
the same notice id. Contacts are destroyed once the reopen window after the resolution closes,
or `citizens.keep_days` after the report, whichever comes first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ioc.citizens.contacts import ContactBox, UnreadableContact
from ioc.citizens.notices import ReportState, due, notice, reopen_until
from ioc.citizens.reopen import REOPEN_PATH, ReopenClaim, reopen_token
from ioc.config import CitizenSettings, Settings
from ioc.dispatch.units import Units
from ioc.models.base import utc_now
from ioc.notify.channels import AddressKind, DeliveryFailed, Message, MessageChannel, configured
from ioc.store.locks import alone
from ioc.store.writer import Store

log = logging.getLogger(__name__)
LOCK = "ioc.citizens.loop"

# A report's contact, and its incident followed through one merge (fusion merges into a live
# incident, which is not merged itself).
REPORTS = """
SELECT c.service_request_id, c.kind, c.sealed, c.created_at, t.category,
       f.id AS incident_id, f.status, f.episode, f.unit, f.resolution, f.resolved_at,
       (SELECT e.reason FROM fused_incident_events e
         WHERE e.incident_id = f.id AND e.status = 'resolved'
         ORDER BY e.version DESC LIMIT 1) AS resolved_note,
       coalesce(n.notices, '{}'::jsonb) AS notices
FROM reporter_contacts c
JOIN tickets t USING (service_request_id)
LEFT JOIN incidents i ON i.id = t.incident_id
LEFT JOIN fused_incidents m ON m.id = i.fused_id
LEFT JOIN fused_incidents f ON f.id = CASE WHEN m.status = 'merged' THEN m.merged_into ELSE m.id END
LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(notice, jsonb_build_array(status, attempts)) AS notices
    FROM citizen_notices WHERE service_request_id = c.service_request_id
) n ON true
ORDER BY c.created_at
"""


@dataclass(frozen=True)
class PassSummary:
    sent: int
    failed: int
    destroyed: int

    def __bool__(self) -> bool:  # worth a line in the log
        return bool(self.sent or self.failed or self.destroyed)


class CitizenLoop:
    def __init__(
        self,
        settings: CitizenSettings,
        channels: dict[AddressKind, MessageChannel],
        units: Units,
    ) -> None:
        assert settings.contact_key is not None
        self.settings = settings
        self.key = settings.contact_key
        self.box = ContactBox.of(settings.contact_key)
        self.channels = channels
        self.units = units
        self.reopen = timedelta(days=settings.reopen_days)
        self.keep = timedelta(days=settings.keep_days)

    async def run_pass(self, store: Store) -> PassSummary:
        async with store.connection() as conn:
            return await self.run_once(conn)

    async def run_once(self, conn: AsyncConnection) -> PassSummary:
        """One pass; nothing when another worker holds the pass. Each outcome is committed as
        it happens, so a crash repeats at most the notice it was sending."""
        return await alone(conn, LOCK, lambda: self._pass(conn)) or PassSummary(0, 0, 0)

    async def _pass(self, conn: AsyncConnection) -> PassSummary:
        sent = failed = destroyed = 0
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(REPORTS)
            reports = await cur.fetchall()
        now = utc_now()
        for report in reports:
            state = self._state(report)
            if self._spent(report, state, now):
                async with conn.transaction():
                    await conn.execute(
                        "DELETE FROM reporter_contacts WHERE service_request_id = %s",
                        (state.ticket_id,),
                    )
                destroyed += 1
                continue
            channel = self.channels.get(AddressKind(report["kind"]))
            if channel is None:
                continue
            for key in due(state):
                outcome = await self._tell(conn, report, state, key, channel, now)
                if outcome == "sent":
                    sent += 1
                elif outcome == "failed":
                    failed += 1
                    break  # later news waits for this notice
        return PassSummary(sent, failed, destroyed)

    def _state(self, report: dict[str, Any]) -> ReportState:
        unit = self.units.get(report["unit"]) if report["unit"] else None
        return ReportState(
            ticket_id=report["service_request_id"],
            category=report["category"],
            incident_id=report["incident_id"],
            status=report["status"],
            episode=report["episode"] or 1,
            unit_name=(unit.name if unit else report["unit"]),
            resolution=report["resolution"],
            resolved_note=report["resolved_note"],
            resolved_at=report["resolved_at"],
        )

    def _spent(self, report: dict[str, Any], state: ReportState, now: datetime) -> bool:
        """The contact is no longer needed: past its keep time, or its report resolved, told,
        and the reopen window closed."""
        if now >= report["created_at"] + self.keep:
            return True
        until = reopen_until(state, self.reopen)
        if state.status != "resolved" or until is None or now < until:
            return False
        told = report["notices"].get(f"resolved:{state.episode}")
        return told is not None and told[0] in ("sent", "abandoned")

    async def _tell(
        self,
        conn: AsyncConnection,
        report: dict[str, Any],
        state: ReportState,
        key: str,
        channel: MessageChannel,
        now: datetime,
    ) -> str:
        """Send one notice unless it was sent or given up: `sent`, `failed` or `done`."""
        previous = report["notices"].get(key)
        if previous is not None and previous[0] in ("sent", "abandoned"):
            return "done"
        attempts = (previous[1] if previous else 0) + 1
        try:
            contact = self.box.open(state.ticket_id, bytes(report["sealed"]))
            await channel.send(contact.address, self._notice(state, key, now))
        except (DeliveryFailed, UnreadableContact) as error:
            status = "abandoned" if attempts >= self.settings.max_attempts else "failed"
            log.warning("notice %s of %s %s: %s", key, state.ticket_id, status, error)
            await self._record(
                conn, state.ticket_id, key, channel.name, status, attempts, str(error)
            )
            return "failed"
        await self._record(conn, state.ticket_id, key, channel.name, "sent", attempts, None)
        return "sent"

    def _notice(self, state: ReportState, key: str, now: datetime) -> Message:
        until = reopen_until(state, self.reopen)
        url = None
        if key.startswith("resolved") and self.settings.public_url and until and until > now:
            assert state.incident_id is not None
            claim = ReopenClaim(state.incident_id, state.ticket_id, state.episode, until)
            base = self.settings.public_url.rstrip("/")
            url = f"{base}{REOPEN_PATH}{reopen_token(self.key, claim)}"
        return notice(state, key, url, until)

    @staticmethod
    async def _record(
        conn: AsyncConnection,
        ticket_id: str,
        key: str,
        channel: str,
        status: str,
        attempts: int,
        detail: str | None,
    ) -> None:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO citizen_notices (service_request_id, notice, channel, status,"
                " attempts, detail) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (service_request_id, notice) DO UPDATE SET"
                " channel = excluded.channel, status = excluded.status,"
                " attempts = excluded.attempts, detail = excluded.detail, at = now()",
                (ticket_id, key, channel, status, attempts, detail),
            )

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


def channels_for(settings: Settings) -> dict[AddressKind, MessageChannel]:
    """E-mail by e-mail; a phone by the channel `citizens.phone_channel` names, if configured."""
    available = configured(settings.notify)
    chosen = {AddressKind.EMAIL: "email", AddressKind.PHONE: settings.citizens.phone_channel}
    return {kind: available[name] for kind, name in chosen.items() if name in available}


def loop_from_settings(settings: Settings) -> CitizenLoop | None:
    """The loop the settings ask for: None without a contact key or any channel."""
    citizens = settings.citizens
    if citizens.contact_key is None:
        return None
    channels = channels_for(settings)
    if not channels:
        log.warning("citizens.contact_key is set but no channel is: reporters are not told")
        return None
    return CitizenLoop(citizens, channels, Units.load(settings.console.units))
