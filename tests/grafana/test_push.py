"""`ioc grafana push` against a small HTTP server that answers like Grafana's API (the paths and
status codes grafana-client uses), recording what it was sent."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from ioc.cli import app
from ioc.config import get_settings
from ioc.grafana.dashboards import DATASOURCE_TYPE, DATASOURCE_UID
from ioc.grafana.publish import datasource_payload, push
from ioc.grafana.walls import walls

TOKEN = "glsa_test_token"


class FakeGrafana:
    def __init__(self) -> None:
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, str] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self, method: str) -> None:
                grafana.calls.append((method, self.path))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.answer(401, {"message": "Unauthorized"})
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                datasource = re.fullmatch(r"/api/datasources/uid/([\w-]+)", self.path)
                folder = re.fullmatch(r"/api/folders/([\w-]+)", self.path)
                if datasource and method == "GET":
                    found = grafana.datasources.get(datasource[1])
                    return self.answer(200, found) if found else self.answer(404, {})
                if datasource and method == "PUT":
                    grafana.datasources[datasource[1]] = body
                    return self.answer(200, {"message": "Datasource updated"})
                if self.path == "/api/datasources" and method == "POST":
                    grafana.datasources[body["uid"]] = body
                    return self.answer(200, {"message": "Datasource added"})
                if folder and method == "GET":
                    if folder[1] in grafana.folders:
                        return self.answer(200, {"uid": folder[1]})
                    return self.answer(404, {"message": "folder not found"})
                if self.path == "/api/folders" and method == "POST":
                    grafana.folders[body["uid"]] = body["title"]
                    return self.answer(200, {"uid": body["uid"]})
                if self.path == "/api/dashboards/db" and method == "POST":
                    if body["folderUid"] not in grafana.folders or not body["overwrite"]:
                        return self.answer(400, {"message": "bad dashboard request"})
                    uid = body["dashboard"]["uid"]
                    grafana.dashboards[uid] = body["dashboard"]
                    return self.answer(200, {"status": "success", "url": f"/d/{uid}"})
                return self.answer(404, {"message": "no such route"})

            def do_GET(self) -> None:
                self.handle_any("GET")

            def do_POST(self) -> None:
                self.handle_any("POST")

            def do_PUT(self) -> None:
                self.handle_any("PUT")

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()
    yield fake
    fake.server.shutdown()


def test_push_creates_then_updates(grafana: FakeGrafana) -> None:
    source = datasource_payload("postgresql://ioc:s%40cret@timescaledb:5432/ioc?sslmode=require")
    assert source["url"] == "timescaledb:5432" and source["user"] == "ioc"
    assert source["secureJsonData"] == {"password": "s@cret"}
    assert source["jsonData"]["sslmode"] == "require" and source["jsonData"]["timescaledb"]

    first = push(grafana.url, TOKEN, walls(), source, "IOC", "ioc")
    assert (first.datasource, first.folder) == ("created", "created")
    assert first.dashboards == [f"/d/{wall.uid}" for wall in walls()]
    assert grafana.datasources[DATASOURCE_UID]["type"] == DATASOURCE_TYPE
    assert grafana.folders == {"ioc": "IOC"}
    assert set(grafana.dashboards) == {wall.uid for wall in walls()}

    second = push(grafana.url, TOKEN, walls(), source, "IOC", "ioc")
    assert (second.datasource, second.folder) == ("updated", "exists")


def test_cli_push_and_a_refused_token(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("IOC_GRAFANA__TOKEN", "IOC_GRAFANA__URL", "IOC_GRAFANA__DATASOURCE_DSN"):
        monkeypatch.delenv(key, raising=False)
    get_settings.cache_clear()
    monkeypatch.setenv("IOC_GRAFANA__DATASOURCE_DSN", "postgresql://ioc:pw@db.internal:5432/ioc")
    runner = CliRunner()
    try:
        ok = runner.invoke(
            app, ["grafana", "push", "--url", grafana.url, "--token", TOKEN, "--folder", "Walls"]
        )
        assert ok.exit_code == 0, ok.output
        assert "datasource created" in ok.output and "/d/ioc-overview" in ok.output
        assert grafana.datasources[DATASOURCE_UID]["url"] == "db.internal:5432"
        assert grafana.folders == {"ioc": "Walls"}

        refused = runner.invoke(app, ["grafana", "push", "--url", grafana.url, "--token", "x"])
        assert refused.exit_code == 1 and "Unauthorized" in refused.output
    finally:
        get_settings.cache_clear()
