"""The live page in a real headless Chromium, against a worker on the embedded broker: a learner
followed by id shows a list with course titles once their events are sent, and a changed list
after one more; the page's lists of every learner need the operator token.

The browser is Debian's ``chromium`` with ``chromium-driver`` (``.ci/run`` installs both). Where
they are missing the test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from online.sources import oulad_catalogue
from streams.tools.demo import SAMPLE, sample_events
from tests.test_pipeline import new_pipeline
from tests.test_worker_api import wait_ready

pytestmark = [pytest.mark.broker, pytest.mark.model]

#: Where a copy of the screenshot goes when set (the README's picture is taken this way).
SCREENSHOT_ENV = "COURSESTREAM_PAGE_SCREENSHOT"


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the browser test")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Chromium driven through chromedriver (no download: the system's own)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[test]')")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        _missing("no headless browser: install Debian's chromium and chromium-driver (apt; .ci/run does)")
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1100"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()


def _texts(browser, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector)]


def _attribute(browser, element_id: str, name: str) -> str | None:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id).get_attribute(name)


def test_the_page_follows_a_learner_as_their_events_arrive(browser, broker, encoder_service, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    events = list(sample_events(300))
    learner = Counter(e.user_id for e in events).most_common(1)[0][0]
    theirs = [e for e in events if e.user_id == learner][:4]
    others = [e for e in events if e.user_id != learner][:60]
    catalogue = list(oulad_catalogue(SAMPLE))
    titles = {c.course_id: c.title for c in catalogue}

    pipeline = new_pipeline(broker, encoder_service, tmp_path)
    token = secrets.token_urlsafe(24)
    pipeline.env["COURSESTREAM_WEB_TOKEN"] = token
    url = f"http://127.0.0.1:{pipeline.env['COURSESTREAM_WEB_PORT']}"
    worker = pipeline.worker()
    try:
        wait_ready([url], [worker])
        pipeline.index(catalogue, worker)
        pipeline.send_events(others)  # the cohort around them: popularity, what others took next

        # The page is open to load; what it reads is not, without the token.
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert httpx.get(f"{url}/recommendations").status_code == 401
        assert httpx.get(f"{url}/recommendations/{learner}").status_code == 401

        browser.get(f"{url}/#token={token}&learner={learner}")
        wait = WebDriverWait(browser, 90, poll_frequency=0.2)
        assert "token" not in browser.current_url  # taken out of the address bar at once
        wait.until(lambda b: "No events from this learner yet" in b.find_element(By.ID, "summary").text)

        pipeline.send_events(theirs[:3])
        wait.until(lambda b: _attribute(b, "list", "data-trigger") == theirs[2].event_id)
        shown = _texts(browser, "#list > li .title")
        assert shown and all(title in titles.values() for title in shown), shown
        reasons = _texts(browser, "#list .reasons li")
        assert reasons and not any(course_id in text for text in reasons for course_id in titles), reasons
        before = browser.find_element(By.ID, "list").text
        assert "events" in browser.find_element(By.ID, "summary").text
        wait.until(lambda b: _texts(b, "#feed > li .learner-link"))  # the lists as they are published

        pipeline.send_events(theirs[3:4])
        wait.until(lambda b: _attribute(b, "list", "data-trigger") == theirs[3].event_id)
        assert browser.find_element(By.ID, "list").text != before
        wait.until(lambda b: b.find_element(By.ID, "summary").text.startswith("4 events"))
        assert all(title in titles.values() for title in _texts(browser, "#list > li .title"))

        goal = next(c for c in catalogue if c.course_id not in {e.course_id for e in theirs})
        browser.find_element(By.ID, "goal").send_keys(goal.course_id)
        browser.find_element(By.CSS_SELECTOR, "#goal-form button").click()
        wait.until(lambda b: _texts(b, "#path li"))
        assert _texts(browser, "#path li")[-1] == goal.title

        browser.execute_script("window.scrollTo(0, 0)")
        screenshot = tmp_path / "live-page.png"
        assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        if copy_to := os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(screenshot, Path(copy_to))
    finally:
        worker.stop()
