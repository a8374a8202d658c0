"""The console in a real browser: Debian's chromium, driven through chromium-driver by Selenium,
against `ioc api` under uvicorn on the session's stack, where the session's workers send their
alert and reopen links. It takes the README's screenshots of the queue and an incident page, and
plays the issue's scenario from a camera's frames to the reporters' e-mail and the walls."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from ioc.api.app import create_app
from ioc.config import Settings
from ioc.console.links import LinkMaker
from ioc.grafana.macros import expand
from ioc.grafana.walls import walls
from ioc.kafka import topics
from ioc.models import FrameHeaders
from tests.conftest import CONSOLE_PORT, CONSOLE_URL, WebhookReceiver, wait_for
from tests.console.conftest import COST, PASSWORD, camera_fire
from tests.smtp import SmtpSink
from tests.store.roles import login

pytestmark = pytest.mark.integration

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (make installs them as root)",
        allow_module_level=True,
    )

# The README's screenshots: `SCREENSHOTS_DIR=docs/console pytest tests/console/test_browser.py`
# renews them; otherwise they go to the test's own folder (a run leaves the checkout as it was).
SCREENSHOTS_ENV = "SCREENSHOTS_DIR"
WAIT_S = 30
API_KEY = "k-scenario"


def console_settings() -> Settings:
    """The session's settings (its links' key and URL, the citizen loop's key) with a fast
    hash, a queue refreshed every second and a key to post 1022 reports with."""
    return Settings(
        console={"password_cost": COST, "queue_refresh_s": 1},
        hotline={"api_keys": {"scenario": API_KEY}},
    )


@pytest.fixture(scope="module")
def server(live_stack: Settings) -> Iterator[str]:
    app = create_app(console_settings())
    config = uvicorn.Config(app, host="127.0.0.1", port=CONSOLE_PORT, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=60, what="the API to listen")
    yield CONSOLE_URL
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    options.add_argument("--lang=vi")
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def until(browser: WebDriver, what: str, check: object) -> None:
    """Wait for `check`, which finds its elements anew each time: while a form's answer loads,
    the page it was sent from goes away, and an element found on it then is stale."""
    ignored = (StaleElementReferenceException, NoSuchElementException)
    WebDriverWait(browser, WAIT_S, ignored_exceptions=ignored).until(check, message=what)  # type: ignore[arg-type]


def sign_in(browser: WebDriver, server: str, name: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{server}/console/")
    until(browser, "the sign-in page", lambda b: "Đăng nhập" in b.title)
    browser.find_element(By.NAME, "username").send_keys(name)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    until(browser, "the queue", lambda b: "Sự cố đang mở" in b.title)


def test_staff_sign_in_see_a_fire_arrive_open_it_and_act(
    browser: WebDriver, server: str, staff: str, live_stack: Settings, tmp_path: Path
) -> None:
    screenshots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    sign_in(browser, server, staff)
    assert "Nguyễn Thị Lan" in browser.find_element(By.TAG_NAME, "header").text

    title = f"Cháy kho hàng chợ Thái {uuid.uuid4().hex[:6]}"
    incident_id = camera_fire(live_stack, title, snapshot=True).id
    row = f'tr[data-incident="{incident_id}"]'
    until(
        browser,
        "the new fire in the queue without a reload",
        lambda b: b.execute_script("return document.querySelector(arguments[0]) !== null", row),
    )
    # The queue's rows are replaced every second: read and click them in the page, in one step,
    # instead of through element handles a refresh can detach between two driver calls.
    row_text = "const r = document.querySelector(arguments[0]); return r ? r.textContent : ''"
    assert "Khẩn cấp" in browser.execute_script(row_text, row)
    screenshots.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(screenshots / "queue.png"))

    browser.execute_script("document.querySelector(arguments[0]).click()", f"{row} a")
    until(browser, "the incident page", lambda b: title in b.title)
    image = browser.find_element(By.CSS_SELECTOR, "img.snapshot")
    until(
        browser,
        "the snapshot to load",
        lambda b: b.execute_script("return arguments[0].naturalWidth", image) > 0,
    )
    assert browser.save_screenshot(str(screenshots / "incident.png"))

    browser.find_element(By.CSS_SELECTOR, "button[value=ack]").click()
    until(browser, "acknowledged", lambda b: "Đã nhận" in b.find_element(By.ID, "status").text)
    history = browser.find_element(By.ID, "history").text
    assert staff in history

    suggested = browser.find_element(By.CSS_SELECTOR, "select[name=unit] option")
    assert suggested.text == "PCCC (đề xuất)"  # a fire goes to the fire police first
    browser.find_element(By.CSS_SELECTOR, "button[value=assign]").click()
    until(browser, "given to PCCC", lambda b: "PCCC" in b.find_element(By.ID, "unit").text)

    browser.find_element(
        By.CSS_SELECTOR, "form[action$='/false-alarm'] input[name=reason]"
    ).send_keys("Khói bếp, không cháy")
    browser.find_element(By.CSS_SELECTOR, "button[value=false-alarm]").click()
    until(
        browser,
        "resolved as a false alarm",
        lambda b: "báo nhầm" in b.find_element(By.ID, "status").text,
    )
    browser.get(f"{server}/console/")
    assert not browser.find_elements(By.CSS_SELECTOR, row)


def test_acknowledge_from_an_alerts_link_and_a_forged_one_is_refused(
    browser: WebDriver, server: str, live_stack: Settings
) -> None:
    browser.delete_all_cookies()  # the recipient need not be signed in
    incident_id = camera_fire(live_stack, f"Cháy nhà dân {uuid.uuid4().hex[:6]}").id
    link = LinkMaker(console_settings()).link(incident_id, "zalo:0912")
    assert link is not None
    browser.get(link)
    until(browser, "the link's page", lambda b: b.find_elements(By.TAG_NAME, "button"))
    browser.find_element(By.TAG_NAME, "button").click()
    until(browser, "acknowledged", lambda b: "Đã nhận sự cố" in b.page_source)
    assert "zalo:0912 (liên kết)" in browser.page_source

    other = LinkMaker(console_settings()).link("inc-another", "zalo:0912")
    assert other is not None
    forged = f"{link.rpartition('.')[0]}.{other.rpartition('.')[2]}"  # another link's signature
    browser.get(forged)
    until(browser, "the refusal", lambda b: "Liên kết không hợp lệ" in b.page_source)


SCENARIO_CAMERA = "cam-test-scenario"  # tests/data/cameras.toml: far from the other test fires
REPORTERS = ("nguyen.lan", "tran.binh")


def open_incident_with(db: psycopg.Connection, sql: str, *params: object) -> Any:
    return db.execute(sql, params).fetchone()


def test_the_issues_scenario_from_a_cameras_fire_to_the_reporters_and_the_walls(
    browser: WebDriver,
    server: str,
    staff: str,
    workers: Settings,
    producer: Any,
    db: psycopg.Connection,
    webhook: WebhookReceiver,
    citizen_mail: SmtpSink,
    samples_dir: Path,
    tmp_path: Path,
) -> None:
    """A fire seen by a camera and reported twice on 1022 is one incident with its evidence;
    staff acknowledge it from the alert's link, give it to PCCC and resolve it in the browser;
    both reporters are told each step by e-mail; the walls show it resolved."""
    tag = uuid.uuid4().hex[:6]
    # The camera: a clear frame, then fire in four (the test rules open a fire on 3 of 5).
    frames = samples_dir / "frames"
    sequence = [frames / "negative" / "neg_00.jpg"]
    sequence += [frames / "fire" / f"fire_0{index}.jpg" for index in (4, 5, 6, 7)]
    start = datetime.now(UTC)
    first_seq = int(start.timestamp())  # a fresh sequence for each run of the session
    for step, frame in enumerate(sequence):
        seq = first_seq + step
        headers = FrameHeaders(
            camera_id=SCENARIO_CAMERA, event_time=start + timedelta(seconds=step), seq=seq
        )
        producer.send(
            workers.kafka.topic(topics.CAMERA_FRAMES),
            key=SCENARIO_CAMERA.encode(),
            value=frame.read_bytes(),
            headers=headers.to_kafka(),
        ).get(timeout=10)
        wait_for(  # one at a time: under load the worker skips to a camera's newest frame
            lambda seq=seq: open_incident_with(
                db,
                "SELECT 1 FROM camera_frames WHERE camera_id = %s AND seq = %s",
                SCENARIO_CAMERA,
                seq,
            ),
            120,
            f"frame {seq} stored",
        )
    (fused_id,) = wait_for(
        lambda: open_incident_with(
            db,
            "SELECT fused_id FROM incidents WHERE source = 'vision' AND source_key = %s"
            " AND kind = 'fire' AND event_time >= %s AND fused_id IS NOT NULL",
            SCENARIO_CAMERA,
            start - timedelta(seconds=1),
        ),
        180,
        "the camera's fire, fused",
    )

    # Two citizens report it on 1022, with an e-mail address each, beside the camera.
    addresses = [f"{name}.{tag}@example.vn" for name in REPORTERS]
    texts = [
        f"Cháy lớn ở kho hàng cạnh chợ, lửa bốc cao, khói đen ({tag})",
        f"Thấy khói và lửa ở kho gần chợ, cần cứu hỏa gấp ({tag})",
    ]
    tickets = []
    with httpx.Client(base_url=server, timeout=30) as http:
        for index, (address, text) in enumerate(zip(addresses, texts, strict=True)):
            answer = http.post(
                "/open311/v2/requests.json",
                json={
                    "description": text,
                    "channel": "app",
                    "lat": 21.70 + 0.0003 * index,
                    "long": 105.95,
                    "email": address,
                },
                headers={"X-API-Key": API_KEY},
            )
            assert answer.status_code == 201, answer.text
            tickets.append(answer.json()[0]["service_request_id"])
    wait_for(
        lambda: open_incident_with(
            db,
            "SELECT 1 FROM fused_incidents WHERE id = %s AND sources = 2 AND reports = 2",
            fused_id,
        ),
        120,
        "the camera's fire and both reports as one incident",
    )
    for address in addresses:
        wait_for(lambda a=address: citizen_mail.to(a), 60, f"{address} told it was received")

    # The alert carried a signed link: one tap acknowledges, before anyone signs in.
    act_url = wait_for(
        lambda: next(
            (
                payload["act_url"]
                for payload in webhook.received
                if payload["incident"]["id"] == fused_id and payload.get("act_url")
            ),
            None,
        ),
        60,
        "the alert with its link",
    )
    browser.delete_all_cookies()
    browser.get(act_url)
    until(browser, "the link's page", lambda b: b.find_elements(By.TAG_NAME, "button"))
    browser.find_element(By.TAG_NAME, "button").click()
    until(browser, "acknowledged from the link", lambda b: "Đã nhận sự cố" in b.page_source)

    # In the console: the evidence, then PCCC, then resolved with what was done.
    sign_in(browser, server, staff)
    browser.get(f"{server}/console/incidents/{fused_id}")
    until(browser, "the incident page", lambda b: "Đã nhận" in b.find_element(By.ID, "status").text)
    image = browser.find_element(By.CSS_SELECTOR, "img.snapshot")
    until(
        browser,
        "the camera's snapshot",
        lambda b: b.execute_script("return arguments[0].naturalWidth", image) > 0,
    )
    # On the map, drawn by Leaflet from the package, no tiles: the incident, the camera, the
    # two reports.
    until(browser, "the map", lambda b: b.find_element(By.ID, "map").get_attribute("data-markers"))
    assert browser.find_element(By.ID, "map").get_attribute("data-markers") == "4"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map path.leaflet-interactive")) == 4
    page = browser.page_source
    assert all(ticket in page for ticket in tickets), "both reports on the page"
    assert all(address not in page for address in addresses), "no contact shown"
    assert "webhook (liên kết)" in browser.find_element(By.ID, "history").text
    assert "webhook firing đã gửi" in browser.find_element(By.ID, "deliveries").text

    browser.find_element(By.CSS_SELECTOR, "button[value=assign]").click()
    until(browser, "given to PCCC", lambda b: "PCCC" in b.find_element(By.ID, "unit").text)
    for address in addresses:
        wait_for(lambda a=address: len(citizen_mail.to(a)) >= 2, 60, f"{address} told of PCCC")
    browser.find_element(By.CSS_SELECTOR, "button[value=in-progress]").click()
    until(browser, "in progress", lambda b: "Đang xử lý" in b.find_element(By.ID, "status").text)
    note = "Đã dập tắt đám cháy, không có người bị thương"
    browser.find_element(By.CSS_SELECTOR, "form[action$='/resolve'] input[name=reason]").send_keys(
        note
    )
    browser.find_element(By.CSS_SELECTOR, "button[value=resolve]").click()
    until(browser, "resolved", lambda b: "Đã xử lý" in b.find_element(By.ID, "status").text)

    # Each reporter: received, given to PCCC, resolved with what was done and how to reopen.
    for address, ticket in zip(addresses, tickets, strict=True):
        mails = wait_for(
            lambda a=address: citizen_mail.to(a) if len(citizen_mail.to(a)) >= 3 else None,
            60,
            f"{address} told it was resolved",
        )
        assert [m.subject for m in mails] == [
            f"[1022] Phản ánh {ticket}: đã tiếp nhận",
            f"[1022] Phản ánh {ticket}: đã giao xử lý",
            f"[1022] Phản ánh {ticket}: đã xử lý",
        ]
        assert "Phòng Cảnh sát PCCC và CNCH" in mails[1].text()
        assert f"Kết quả: {note}." in mails[2].text()
        assert f"{CONSOLE_URL}/citizen/reopen/" in mails[2].text()

    browser.refresh()  # staff see what each reporter was told, and through which channel
    for ticket in tickets:
        told = browser.find_element(By.CSS_SELECTOR, f'tr[data-ticket="{ticket}"] td.notices')
        assert told.text == "đã tiếp nhận (email) · đã giao (email) · đã xử lý (email)"
    screenshots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1280, 2600)  # the whole page: evidence, reports, map, history
    until(
        browser,
        "the map redrawn",
        lambda b: b.find_element(By.ID, "map").get_attribute("data-markers"),
    )
    assert browser.save_screenshot(str(screenshots / "resolved.png"))
    browser.set_window_size(1280, 900)

    # The walls, as Grafana's login reads them: gone from the active list, resolved in the log.
    fused_wall = next(wall for wall in walls() if wall.uid == "ioc-incidents")
    panels = {panel.title: panel for panel in fused_wall.panels}
    with login(workers.database.dsn, "ioc_grafana") as grafana:
        timescaledb = (
            grafana.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            is not None
        )

        def rows(title: str) -> list[tuple[Any, ...]]:
            sql = expand(
                panels[title].sql,
                time_from=start - timedelta(minutes=5),
                time_to=datetime.now(UTC) + timedelta(minutes=1),
                interval=timedelta(minutes=1),
                timescaledb=timescaledb,
            )
            return grafana.execute(sql).fetchall()

        assert all(fused_id not in row for row in rows("Danh sách sự cố đang xử lý"))
        staff_changes = ("resolved", "in_progress", "assigned", "acknowledged")  # not fusion's
        log = [
            row for row in rows("Nhật ký xử lý") if row[1] == fused_id and row[3] in staff_changes
        ]
        assert [(row[3], row[6]) for row in log] == [
            ("resolved", staff),
            ("in_progress", staff),
            ("assigned", staff),
            ("acknowledged", "webhook (liên kết)"),
        ]
        assert rows("Đã xử lý xong hôm nay")[0][0] >= 1
