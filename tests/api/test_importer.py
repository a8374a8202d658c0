"""`ioc tickets import`: CSV and JSONL files with good and bad rows, through the real stack."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import psycopg
import pytest

from ioc.api.importer import ImportReport, import_tickets
from ioc.config import Settings
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

PHONE = "0987654321"


def ticket(ticket_id: str | None, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "service_request_id": ticket_id,
        "requested_datetime": "2026-11-18T14:28:00+07:00",
        "channel": "phone",
        "description": f"Rác thải ùn ứ tại chợ Túc Duyên ({uuid.uuid4().hex[:6]})",
        "address_string": "Phường Túc Duyên, Thái Nguyên",
        "lat": 21.5871,
        "long": 105.8413,
        "phone": PHONE,
        "expected": {"category": "moi_truong", "urgent": False},
    }
    row.update(overrides)
    return {key: value for key, value in row.items() if value is not None}


def stored_ids(db: psycopg.Connection, ids: list[str]) -> set[str]:
    query = "SELECT service_request_id FROM tickets WHERE service_request_id = ANY(%s)"
    return {row[0] for row in db.execute(query, (ids,))}


def reasons(report: ImportReport) -> dict[int, str]:
    return {rejection.line: rejection.reason for rejection in report.rejected}


def test_jsonl_import(
    tmp_path: Path, workers: Settings, db: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    lines = [
        json.dumps(ticket(f"IJ-{tag}-1"), ensure_ascii=False),  # 1 ok
        json.dumps(ticket(f"IJ-{tag}-2", service_code="moi_truong"), ensure_ascii=False),  # 2 ok
        json.dumps(ticket(None), ensure_ascii=False),  # 3 ok, id derived
        "",  # 4 blank: skipped
        json.dumps(ticket(f"IJ-{tag}-5", description=None)),  # 5 no description
        '{"service_request_id": "IJ-broken", ',  # 6 malformed
        json.dumps(ticket(f"IJ-{tag}-7", lat=1.3, long=103.8)),  # 7 Singapore
        json.dumps(ticket(f"IJ-{tag}-8", requested_datetime=None)),  # 8 no date
        json.dumps(ticket(f"IJ-{tag}-1")),  # 9 duplicate id of line 1
        json.dumps(ticket(f"IJ-{tag}-10", service_code="potholes")),  # 10 unknown code
        json.dumps([1, 2]),  # 11 not an object
    ]
    path = tmp_path / "tickets.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = import_tickets(path, workers, progress=True)

    assert report.accepted == 3
    assert report.accepted_ids[:2] == [f"IJ-{tag}-1", f"IJ-{tag}-2"]
    assert report.accepted_ids[2].startswith("TN-20261118-")
    found = reasons(report)
    assert sorted(found) == [5, 6, 7, 8, 9, 10, 11]
    assert "description" in found[5]
    assert "JSON" in found[6]
    assert found[7].startswith("lat: outside Vietnam")
    assert "requested_datetime" in found[8]
    assert "service_request_id" in found[9] and "line 1" in found[9]
    assert "service_code" in found[10]
    assert "object" in found[11]
    assert all(PHONE not in reason for reason in found.values())
    printed = capsys.readouterr().out
    assert "3 accepted" in printed and "7 rejected" in printed

    wait_for(
        lambda: stored_ids(db, report.accepted_ids) == set(report.accepted_ids),
        timeout=30,
        what="imported JSONL tickets in the database",
    )
    hashes = db.execute(
        "SELECT reporter_hash FROM tickets WHERE service_request_id = ANY(%s)",
        (report.accepted_ids,),
    ).fetchall()
    assert all(PHONE not in (row[0] or "") for row in hashes)


def test_csv_import_is_idempotent(
    tmp_path: Path, workers: Settings, db: psycopg.Connection
) -> None:
    tag = uuid.uuid4().hex[:6]
    columns = [
        "service_request_id",
        "requested_datetime",
        "channel",
        "description",
        "service_code",
        "lat",
        "long",
        "address_string",
        "phone",
    ]
    rows = [
        ticket(f"IC-{tag}-2"),  # line 2 ok
        ticket(None, description="Nắp cống bị mất,\nnguy hiểm cho xe máy", lat="", long=""),  # 3-4
        ticket(f"IC-{tag}-5", service_code="potholes"),  # line 5
        ticket(f"IC-{tag}-6", requested_datetime=""),  # line 6
        ticket(f"IC-{tag}-7", requested_datetime="2026-11-18 14:28"),  # line 7 naive
        ticket(f"IC-{tag}-8", channel="fax", lat="abc"),  # line 8
        ticket(f"IC-{tag}-9", service_code="giao_thong"),  # line 9 ok
    ]
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    report = import_tickets(path, workers, progress=False)

    assert report.accepted == 3
    assert report.accepted_ids[0] == f"IC-{tag}-2"
    assert report.accepted_ids[1].startswith("TN-20261118-")
    assert report.accepted_ids[2] == f"IC-{tag}-9"
    found = reasons(report)
    assert sorted(found) == [5, 6, 7, 8]
    assert "service_code" in found[5]
    assert "requested_datetime" in found[6] and "required" in found[6]
    assert "requested_datetime" in found[7] and "timezone" in found[7]
    assert "channel" in found[8] and "lat" in found[8]

    wait_for(
        lambda: stored_ids(db, report.accepted_ids) == set(report.accepted_ids),
        timeout=30,
        what="imported CSV tickets in the database",
    )
    again = import_tickets(path, workers, progress=False)
    assert again.accepted_ids == report.accepted_ids, "derived ids must be stable"


def test_unsupported_file_is_refused(tmp_path: Path, workers: Settings) -> None:
    path = tmp_path / "tickets.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        import_tickets(path, workers, progress=False)
    doubled = tmp_path / "doubled.csv"
    doubled.write_text("description,description\na,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="description"):
        import_tickets(doubled, workers, progress=False)
