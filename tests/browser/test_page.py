"""The page in a real headless Chromium, against gunicorn and a real worker."""

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from harness.processes import REPO_ROOT, start_gunicorn, start_worker
from tests.support import skip_or_fail

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        skip_or_fail(
            f"Chromium not found at {CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture
def site(app: Flask, migrated: dict[str, str], log_dir: Path) -> Iterator[dict]:
    """gunicorn and a worker on a queue of their own, so a test can stop and start the worker."""
    env = {**migrated, "CELERY_TASK_DEFAULT_QUEUE": f"browser-{uuid.uuid4().hex[:8]}"}
    server, base_url = start_gunicorn(env, log_dir)
    state = {"env": env, "url": base_url, "worker": start_worker(env, log_dir), "log_dir": log_dir}
    yield state
    state["worker"].stop()
    server.stop()


@pytest.fixture
def expected_statuses() -> set[int]:
    """HTTP error statuses a test provokes on purpose (Chromium logs each as a console error)."""
    return set()


def unexpected(problems: list[str], expected_statuses: set[int]) -> list[str]:
    """Drop Chromium's network log lines for statuses the test provoked on purpose."""
    allowed = tuple(
        f"Failed to load resource: the server responded with a status of {status} "
        for status in expected_statuses
    )
    return [
        line for line in problems if not line.removeprefix("console error: ").startswith(allowed)
    ]


@pytest.fixture
def page(browser: Browser, site: dict, expected_statuses: set[int]) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    page.goto(site["url"] + "/")
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
    context.close()
    assert unexpected(problems, expected_statuses) == []


def divide(page: Page, x: str, y: str) -> None:
    page.get_by_label("x", exact=True).fill(x)
    page.get_by_label("y", exact=True).fill(y)
    page.get_by_role("button", name="Divide").click()


def test_divide_shows_the_result_live(page: Page) -> None:
    divide(page, "1", "2")
    expect(page.locator("#divide-status")).to_have_text("1 ÷ 2: SUCCESS = 0.5")
    first_row = page.locator("#tasks-table tbody tr").first
    expect(first_row).to_contain_text("divide(1, 2)")
    expect(first_row).to_contain_text("SUCCESS")
    expect(first_row).to_contain_text("0.5")


def test_divide_by_zero_shows_the_error(page: Page) -> None:
    divide(page, "1", "0")
    expect(page.locator("#divide-status")).to_contain_text("FAILURE")
    expect(page.locator("#divide-status")).to_contain_text("ZeroDivisionError: division by zero")
    expect(page.locator("#tasks-table tbody tr").first).to_contain_text("ZeroDivisionError")


def test_invalid_number_error_is_shown_next_to_its_field(
    page: Page, expected_statuses: set[int]
) -> None:
    expected_statuses.add(422)
    divide(page, "one", "2")
    expect(page.locator("#divide-x-error")).to_have_text("x must be a number")
    expect(page.locator("#divide-x")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#divide-y-error")).to_have_text("")


def test_add_user_then_duplicate_shows_error_next_to_field(
    page: Page, expected_statuses: set[int]
) -> None:
    expected_statuses.update({409, 422})

    def add(username: str, email: str) -> None:
        page.get_by_label("Username").fill(username)
        page.get_by_label("Email").fill(email)
        page.get_by_role("button", name="Add user").click()

    add("grace", "grace@example.com")
    expect(page.locator("#users-list")).to_contain_text("grace <grace@example.com>")
    add("grace", "other@example.com")
    expect(page.locator("#user-username-error")).to_have_text("username is already taken")
    expect(page.locator("#user-email-error")).to_have_text("")
    add("hopper", "not-an-email")
    expect(page.locator("#user-email-error")).to_contain_text("must be an email address")


def test_task_queued_while_worker_is_down_finishes_when_it_returns(page: Page, site: dict) -> None:
    site["worker"].stop()
    divide(page, "3", "4")
    expect(page.locator("#divide-status")).to_have_text("3 ÷ 4: PENDING")
    site["worker"] = start_worker(site["env"], site["log_dir"])
    expect(page.locator("#divide-status")).to_have_text("3 ÷ 4: SUCCESS = 0.75")


def test_docs_page_renders_the_api(browser: Browser, site: dict) -> None:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.goto(site["url"] + "/docs")
    expect(page.get_by_text("Flask + Celery stack API")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator(".opblock-summary-path", has_text="/tasks/divide")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)
    context.close()
    assert problems == []


def test_page_fits_a_phone_screen(browser: Browser, site: dict) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(site["url"] + "/")
    expect(page.get_by_role("button", name="Divide")).to_be_visible()
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=True)
    context.close()
    assert overflow <= 0
