"""The labeling page in a real browser: Debian's chromium, driven by Playwright (never `playwright install`).

A labeler signs in with their token, sees the post and the two summaries, picks one with the keyboard (2, then
confidence 7, then Enter), and the answer is in the SQLite database. The set-up installs chromium with apt-get when
it is missing and the machine allows it (root); under CI=true a missing browser fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.service_fixtures import Server, service_bundles

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(why: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: a missing browser fails the run)")
    pytest.skip(why)


def _ensure_chromium() -> Path:
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing and could not be installed (apt-get install chromium, as root)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (requirements/dev.txt)")
    exe = _ensure_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(exe), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def labeled_server(tiny_tokenizer, tmp_path_factory, tmp_path):
    bundles, _ = service_bundles(tiny_tokenizer, tmp_path_factory)
    server = Server(bundles, tmp_path / "label.db").start()
    tasks = [
        {
            "info": {
                "id": f"b{i}",
                "post": f"Post number {i}: my dog barks at night.",
                "title": f"Title {i}",
                "subreddit": "pets",
            },
            "summaries": [
                {"text": f" first summary {i}", "policy": "a"},
                {"text": f" second summary {i}", "policy": "b"},
            ],
            "labelers": ["pat"],
        }
        for i in range(2)
    ]
    with server.admin() as admin:
        token = admin.post("/v1/labelers", json={"name": "pat"}).json()["token"]
        ids = admin.post("/v1/label/tasks", json={"tasks": tasks}).json()["ids"]
    yield server, token, ids
    server.stop()


def _answers(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT a.task_id, l.name, a.choice, a.confidence, a.axes, a.note FROM answers a "
            "JOIN labelers l ON l.id = a.labeler_id ORDER BY a.task_id"
        ).fetchall()
    finally:
        con.close()


def test_a_labeler_answers_with_the_keyboard_and_it_is_in_the_database(browser, labeled_server, tmp_path):
    server, token, (first, second) = labeled_server
    page = browser.new_page()
    page.goto(f"{server.url}/label")

    page.fill("#token", "not-a-token")
    page.press("#token", "Enter")
    page.wait_for_selector("#login-status:has-text('unknown token')")

    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_selector("#work", state="visible")
    assert page.inner_text("#who") == "labeler: pat"
    assert page.inner_text("#post-body") == "Post number 0: my dog barks at night."
    assert page.inner_text("#s0 .text").strip() == "first summary 0"
    assert page.inner_text("#progress-text") == "0 / 2 done"

    page.keyboard.press("2")  # choose the second summary
    page.keyboard.press("7")  # confidence 7
    assert "chosen" in page.get_attribute("#s1", "class") and "chosen" not in page.get_attribute("#s0", "class")
    assert page.get_attribute("#confidence button[data-value='7']", "aria-checked") == "true"
    page.screenshot(path=str(tmp_path / "label.png"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#progress-text:has-text('1 / 2 done')")
    page.wait_for_function("document.getElementById('post-body').textContent.includes('Post number 1')")

    # Digits typed into the note are text, not shortcuts; axes come from the selects.
    page.fill("#note", "123 both fine")
    page.press("#note", "1")
    assert page.locator("#s0.chosen, #s1.chosen").count() == 0
    page.click("#axes-box summary")
    page.select_option("#axis-0-overall", "6")
    page.select_option("#axis-1-coherence", "3")
    page.click("#post-title")  # leave the form fields
    page.keyboard.press("1")
    page.keyboard.press("9")
    page.keyboard.press("Enter")
    page.wait_for_selector("#done", state="visible")
    assert page.inner_text("#progress-text") == "2 / 2 done"
    page.close()

    import json

    rows = _answers(server.db)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(first, "pat", 1, 7), (second, "pat", 0, 9)]
    assert rows[0][4] is None and rows[0][5] is None
    axes = json.loads(rows[1][4])
    assert axes[0]["overall"] == 6 and axes[1]["coherence"] == 3 and axes[0]["accuracy"] is None
    assert rows[1][5] == "123 both fine1"
