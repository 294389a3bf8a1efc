"""The page in a real headless Chromium, against gunicorn and a real worker."""

import json
import os
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Route,
    expect,
    sync_playwright,
)

from harness.processes import REPO_ROOT, start_gunicorn, start_worker
from tests.support import create_token, skip_or_fail

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


def task_row(page: Page, text: str) -> Locator:
    """The row of the recent tasks table that shows `text` (e.g. "divide(1, 2)")."""
    return page.locator("#tasks-table tbody tr", has_text=text)


def cancel_button(row: Locator) -> Locator:
    return row.get_by_role("button", name="Cancel")


def expect_cancelled(row: Locator) -> None:
    """The row shows REVOKED in its own style, "cancelled" as outcome, and no Cancel button."""
    expect(row.locator("td.state")).to_have_text("REVOKED")
    expect(row.locator("td.state")).to_have_class("state state-revoked")
    expect(row).to_contain_text("cancelled")
    expect(cancel_button(row)).to_have_count(0)


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


def test_cancel_a_running_divide_stops_it(page: Page, site: dict) -> None:
    site["worker"].stop()
    slow_env = {**site["env"], "DIVIDE_DELAY_SECONDS": "60"}
    site["worker"] = start_worker(slow_env, site["log_dir"], concurrency=1)
    divide(page, "5", "6")
    row = task_row(page, "divide(5, 6)")
    expect(row.locator("td.state")).to_have_text("STARTED")
    task_id = row.get_attribute("data-task-id")
    cancel_button(row).click()
    expect_cancelled(row)
    expect(page.locator("#divide-status")).to_have_text("5 ÷ 6: REVOKED (cancelled)")
    expect(page.locator("#divide-cancel")).to_be_hidden()
    expect(page.locator("#tasks-error")).to_have_text("")
    # The worker stops the task at its next check, long before its 60 s of work.
    site["worker"].wait_for_output(f"[{task_id}] ignored", timeout=10)
    expect_cancelled(row)


def test_cancel_a_queued_divide_from_its_status_line(page: Page, site: dict) -> None:
    site["worker"].stop()
    divide(page, "7", "8")
    expect(page.locator("#divide-status")).to_have_text("7 ÷ 8: PENDING")
    row = task_row(page, "divide(7, 8)")
    expect(cancel_button(row)).to_be_visible()
    task_id = row.get_attribute("data-task-id")
    page.locator("#divide-cancel").click()
    expect(page.locator("#divide-status")).to_have_text("7 ÷ 8: REVOKED (cancelled)")
    expect(page.locator("#divide-cancel")).to_be_hidden()
    expect(page.locator("#divide-cancel-error")).to_have_text("")
    expect_cancelled(row)
    # A worker that receives it later refuses to run it.
    site["worker"] = start_worker(site["env"], site["log_dir"])
    site["worker"].wait_for_output(f"[{task_id}] ignored")
    expect_cancelled(row)


def test_finished_task_has_no_cancel_button(page: Page) -> None:
    divide(page, "1", "4")
    expect(page.locator("#divide-status")).to_have_text("1 ÷ 4: SUCCESS = 0.25")
    row = task_row(page, "divide(1, 4)")
    expect(row.locator("td.state")).to_have_text("SUCCESS")
    expect(cancel_button(row)).to_have_count(0)
    expect(page.locator("#divide-cancel")).to_be_hidden()


def test_cancel_of_a_task_that_finished_meanwhile_shows_its_outcome(
    page: Page, site: dict, expected_statuses: set[int]
) -> None:
    expected_statuses.add(409)
    site["worker"].stop()
    divide(page, "3", "8")
    row = task_row(page, "divide(3, 8)")
    expect(cancel_button(row)).to_be_visible()
    task_id = row.get_attribute("data-task-id")
    task_url = f"{site['url']}/tasks/{task_id}"
    finished_first: list[str] = []

    def finish_then_cancel(route: Route) -> None:
        """Let the task finish before the page's cancel reaches the server (which says 409)."""
        site["worker"] = start_worker(site["env"], site["log_dir"])
        with urllib.request.urlopen(f"{task_url}?wait=10", timeout=20) as reply:
            finished_first.append(json.load(reply)["state"])
        route.continue_()

    page.route(f"{task_url}/cancel", finish_then_cancel)
    # After the 409 the page reads the task again (the long poll adds ?wait=, the list ?limit=).
    with page.expect_request(lambda request: request.url == task_url) as refresh:
        with page.expect_response(f"{task_url}/cancel") as cancel_reply:
            cancel_button(row).click()
    assert cancel_reply.value.status == 409
    assert refresh.value.method == "GET"
    assert finished_first == ["SUCCESS"]
    expect(row.locator("td.state")).to_have_text("SUCCESS")
    expect(row).to_contain_text("0.375")
    expect(cancel_button(row)).to_have_count(0)
    expect(page.locator("#tasks-error")).to_have_text("")


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


def test_page_asks_for_a_token_once_then_works(
    browser: Browser, app: Flask, migrated: dict[str, str], log_dir: Path
) -> None:
    env = {
        **migrated,
        "API_AUTH": "required",
        "CELERY_TASK_DEFAULT_QUEUE": f"browser-{uuid.uuid4().hex[:8]}",
    }
    server, base_url = start_gunicorn(env, log_dir)
    worker = start_worker(env, log_dir)
    context = browser.new_context()
    try:
        token = create_token(env, "browser")
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(base_url + "/")
        dialog = page.get_by_role("dialog", name="This API needs a token")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("docker compose exec web flask tokens create NAME")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page-token-dialog.png"))
        page.get_by_label("API token").fill("fcs_0000000000000000.wrong")
        page.get_by_role("button", name="Use token").click()
        expect(page.locator("#token-error")).to_have_text(
            "That token was refused: it is unknown or revoked."
        )
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Use token").click()
        expect(dialog).to_be_hidden()
        divide(page, "1", "2")
        expect(page.locator("#divide-status")).to_have_text("1 ÷ 2: SUCCESS = 0.5")
        # Kept for this tab's session only: not in a cookie, not in the URL.
        assert page.evaluate("sessionStorage.getItem('apiToken')") == token
        assert context.cookies() == [] and token not in page.url
        page.reload()
        expect(page.locator("#tasks-table tbody tr").first).to_contain_text("divide(1, 2)")
        expect(dialog).to_be_hidden()
        page.screenshot(path=str(ARTIFACTS / "page-token.png"), full_page=True)
        # /docs takes a token through Swagger UI's "Authorize" (kept in memory only).
        page.goto(base_url + "/docs")
        page.get_by_role("button", name="Authorize").first.click()
        expect(page.get_by_text("bearerAuth  (http, Bearer)")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "docs-authorize.png"))
    finally:
        context.close()
        worker.stop()
        server.stop()
