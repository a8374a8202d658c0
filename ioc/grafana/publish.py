"""Write the walls to `grafana/dashboards` (what docker-compose's Grafana provisions), or upload
them and the datasource to an existing Grafana through its HTTP API (`grafana-client`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ioc.grafana.dashboards import DATASOURCE_TYPE, DATASOURCE_UID, Dashboard, render

REPO_DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
DATASOURCE_NAME = "IOC TimescaleDB"


def dashboard_files(dashboards: list[Dashboard]) -> dict[str, str]:
    """File name -> exact text, one file per wall, named by its uid."""
    return {f"{dashboard.uid}.json": render(dashboard) for dashboard in dashboards}


def stale_files(dashboards: list[Dashboard], directory: Path) -> list[str]:
    """Names of the files in `directory` that differ from the generator, are missing, or
    belong to no wall."""
    expected = dashboard_files(dashboards)
    present = {path.name for path in directory.glob("*.json")}
    return sorted(
        name
        for name in present | set(expected)
        if name not in expected
        or name not in present
        or (directory / name).read_text(encoding="utf-8") != expected[name]
    )


def write_dashboards(dashboards: list[Dashboard], directory: Path) -> list[Path]:
    """Write every wall; files of walls that no longer exist are removed. Returns the files
    whose content changed."""
    directory.mkdir(parents=True, exist_ok=True)
    files = dashboard_files(dashboards)
    changed = []
    for stale in sorted(directory.glob("*.json")):
        if stale.name not in files:
            stale.unlink()
            changed.append(stale)
    for name, text in sorted(files.items()):
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def datasource_payload(dsn: str, timescaledb: bool = True) -> dict[str, Any]:
    """The datasource of `grafana/provisioning/datasources/ioc.yaml`, pointed at `dsn` (the
    database as Grafana's server reaches it)."""
    parts = urlsplit(dsn)
    if parts.scheme not in {"postgresql", "postgres"} or not parts.hostname:
        raise ValueError("the datasource DSN must be a postgresql://user:password@host/db URL")
    query = parse_qs(parts.query)
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": f"{parts.hostname}:{parts.port or 5432}",
        "user": unquote(parts.username or ""),
        "isDefault": True,
        "jsonData": {
            "database": parts.path.lstrip("/") or "ioc",
            "sslmode": query.get("sslmode", ["disable"])[0],
            "postgresVersion": 1700,
            "timescaledb": timescaledb,
            "maxOpenConns": 10,
            "maxIdleConns": 2,
            "connMaxLifetime": 14400,
        },
        "secureJsonData": {"password": unquote(parts.password or "")},
    }


@dataclass(frozen=True)
class PushReport:
    datasource: str  # "created" or "updated"
    folder: str  # "created" or "exists"
    dashboards: list[str]  # urls Grafana returned


def push(
    url: str,
    token: str | None,
    dashboards: list[Dashboard],
    datasource: dict[str, Any],
    folder_title: str,
    folder_uid: str,
    timeout_s: float = 10.0,
) -> PushReport:
    """Upsert the datasource (by uid), the folder and every dashboard (overwrite=True).
    Without a token, credentials may be in the URL (http://user:password@host:3000)."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)

    def missing(error: GrafanaClientError) -> bool:
        return error.status_code == 404

    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as error:
        if not missing(error):
            raise
        api.datasource.create_datasource(datasource)
        datasource_outcome = "created"
    else:
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, datasource)
        datasource_outcome = "updated"

    try:
        api.folder.get_folder(folder_uid)
        folder_outcome = "exists"
    except GrafanaClientError as error:
        if not missing(error):
            raise
        api.folder.create_folder(folder_title, uid=folder_uid)
        folder_outcome = "created"

    urls = []
    for dashboard in dashboards:
        answer = api.dashboard.update_dashboard(
            {
                "dashboard": dashboard.to_json(),
                "folderUid": folder_uid,
                "overwrite": True,
                "message": "ioc grafana push",
            }
        )
        urls.append(str(answer.get("url", dashboard.uid)) if isinstance(answer, dict) else "")
    return PushReport(datasource_outcome, folder_outcome, urls)
