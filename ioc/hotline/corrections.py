"""Staff corrections of triage: applied to the ticket and its incident, audited, and read back as
training examples by `ioc triage train`.

A correction that makes a ticket urgent raises its incident to urgent in the same transaction and
returns it, so the caller publishes it and the alerts worker pages at once, as for a ticket
triaged urgent on arrival.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import dict_row
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from ioc.hotline.tickets import (
    KIND_OF_CATEGORY,
    UnknownTicket,
    severity_for,
)
from ioc.hotline.training import Example
from ioc.hotline.triage import SlaTable
from ioc.incidents.rows import incident_from_row
from ioc.models import Incident, IncidentKind, Severity
from ioc.models.base import epoch_ms, utc_now
from ioc.models.categories import Category


class CorrectionError(ValueError):
    """A correction that cannot apply: it changes nothing."""


class Correction(BaseModel):
    """What a staff member says triage should have been, who they are, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    category: Category | None = Field(
        None, validation_alias=AliasChoices("service_code", "category")
    )
    urgent: bool | None = None
    priority: int | None = Field(None, ge=1, le=4)
    corrected_by: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=1000)

    @field_validator("corrected_by", "reason")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must be printable text on one line")
        return value

    @model_validator(mode="after")
    def _something(self) -> Correction:
        if self.category is None and self.urgent is None and self.priority is None:
            raise ValueError("give a category, urgent or a priority")
        if (
            self.priority is not None
            and self.urgent is not None
            and self.urgent != (self.priority <= 2)
        ):
            raise ValueError("priority 1-2 is urgent and 3-4 is not: urgent and priority disagree")
        return self

    def priority_after(self, current: int) -> int:
        """An explicit priority wins; otherwise urgent makes a calm ticket 2 and a calm verdict
        makes an urgent one 3, and an unchanged urgency keeps the priority."""
        if self.priority is not None:
            return self.priority
        if self.urgent is None or self.urgent == (current <= 2):
            return current
        return 2 if self.urgent else 3


@dataclass(frozen=True)
class Applied:
    ticket_id: str
    category: Category
    priority: int
    urgent: bool
    raised: bool  # made urgent: its incident now pages
    incident: Incident | None  # the incident's new state, to publish; None when unchanged


async def correct_triage(
    conn: AsyncConnection, ticket_id: str, correction: Correction, sla: SlaTable
) -> Applied:
    """Apply and record `correction`; the SLA deadline follows the new category and priority."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT category, priority, urgent, requested_at, incident_id, triage_model, status"
            " FROM tickets WHERE service_request_id = %s FOR UPDATE",
            (ticket_id,),
        )
        current = await cur.fetchone()
        if current is None:
            raise UnknownTicket(f"unknown ticket {ticket_id}")
        category = correction.category or Category(current["category"])
        priority = correction.priority_after(current["priority"])
        urgent = priority <= 2
        if (category, priority) == (current["category"], current["priority"]):
            raise CorrectionError(
                f"{ticket_id} is already {category.value}, priority {priority}: nothing to correct"
            )
        due = current["requested_at"] + timedelta(hours=sla.hours_for(category, priority))
        await cur.execute(
            "UPDATE tickets SET category = %s, priority = %s, urgent = %s, sla_due = %s,"
            " updated_at = now() WHERE service_request_id = %s",
            (category, priority, urgent, due, ticket_id),
        )
        await cur.execute(
            "INSERT INTO triage_corrections (service_request_id, corrected_by, reason,"
            " from_category, from_priority, from_urgent, to_category, to_priority, to_urgent,"
            " triage_model) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                ticket_id,
                correction.corrected_by,
                correction.reason,
                current["category"],
                current["priority"],
                current["urgent"],
                category,
                priority,
                urgent,
                current["triage_model"],
            ),
        )
        await cur.execute(
            "INSERT INTO ticket_events (service_request_id, status, note) VALUES (%s, %s, %s)",
            (
                ticket_id,
                current["status"],
                f"triage corrected: {current['category']} p{current['priority']}"
                f" → {category.value} p{priority}",
            ),
        )
        raised = urgent and not current["urgent"]
        row = await _update_incident(cur, ticket_id, current["incident_id"], category, priority)
    incident = incident_from_row(row, epoch_ms(utc_now())) if row else None
    return Applied(ticket_id, category, priority, urgent, raised, incident)


async def _update_incident(
    cur: AsyncCursor[dict[str, Any]],
    ticket_id: str,
    incident_id: str | None,
    category: Category,
    priority: int,
) -> dict[str, Any] | None:
    """The incident this ticket opened takes the new category and severity; one it was linked
    to as a further report only rises, since other reports stand behind it too."""
    if incident_id is None:
        return None
    severity = severity_for(priority <= 2, priority)
    await cur.execute(
        "UPDATE incidents SET category = %(category)s, kind = %(kind)s, severity = %(severity)s,"
        " updated_at = now() WHERE id = %(id)s AND source_key = %(ticket)s AND status = 'open'"
        " RETURNING *",
        {
            "category": category,
            "kind": KIND_OF_CATEGORY.get(category, IncidentKind.CITIZEN_REPORT),
            "severity": severity,
            "id": incident_id,
            "ticket": ticket_id,
        },
    )
    row = await cur.fetchone()
    if row is not None:
        return row
    ranks = [level.value for level in Severity if level.rank < severity.rank]
    await cur.execute(
        "UPDATE incidents SET severity = %s, updated_at = now()"
        " WHERE id = %s AND status = 'open' AND NOT severity = ANY(%s) AND severity <> %s"
        " RETURNING *",
        (severity, incident_id, ranks, severity),
    )
    return await cur.fetchone()


async def training_examples(conn: AsyncConnection) -> list[Example]:
    """Each corrected ticket once, as its latest correction says it should have been triaged."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT DISTINCT ON (c.service_request_id) c.service_request_id, t.description,"
            " c.to_category, c.to_priority FROM triage_corrections AS c"
            " JOIN tickets AS t USING (service_request_id)"
            " ORDER BY c.service_request_id, c.at DESC, c.id DESC"
        )
        rows = await cur.fetchall()
    return [
        Example(
            row["description"],
            Category(row["to_category"]),
            row["to_priority"],
            source=f"correction:{row['service_request_id']}",
        )
        for row in rows
        if row["description"]
    ]
