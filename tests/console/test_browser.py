"""The console in a real browser: Debian's chromium, driven through chromium-driver by Selenium,
against `ioc api` under uvicorn on the session's stack. It takes the README's screenshots of the
queue and an incident page."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

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
from ioc.devtools.stack.process import free_port
from tests.conftest import wait_for
from tests.console.conftest import COST, PASSWORD, camera_fire

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
LINK_KEY = "browser-test-" + "k" * 32
WAIT_S = 30


def console_settings(base_url: str) -> Settings:
    return Settings(
        console={"password_cost": COST, "link_key": LINK_KEY, "queue_refresh_s": 1},
        alerts={"api_url": base_url},
    )


@pytest.fixture(scope="module")
def server(live_stack: Settings) -> Iterator[str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(console_settings(base_url))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=60, what="the API to listen")
    yield base_url
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
    link = LinkMaker(console_settings(server)).link(incident_id, "zalo:0912")
    assert link is not None
    browser.get(link)
    until(browser, "the link's page", lambda b: b.find_elements(By.TAG_NAME, "button"))
    browser.find_element(By.TAG_NAME, "button").click()
    until(browser, "acknowledged", lambda b: "Đã nhận sự cố" in b.page_source)
    assert "zalo:0912 (liên kết)" in browser.page_source

    other = LinkMaker(console_settings(server)).link("inc-another", "zalo:0912")
    assert other is not None
    forged = f"{link.rpartition('.')[0]}.{other.rpartition('.')[2]}"  # another link's signature
    browser.get(forged)
    until(browser, "the refusal", lambda b: "Liên kết không hợp lệ" in b.page_source)
