"""The review UI in a real headless Chromium: log in, filter, fix a label from the keyboard,
see the counts change; screenshots are kept in the test's temporary directory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from service.predlog import connect
from service.review.browser import chromium_page, log_in
from tests.feedback.conftest import TOKEN, log_predictions

pytestmark = pytest.mark.slow


def shots(tmp_path):
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


def corrections(url: str) -> list[tuple]:
    conn = connect(url)
    try:
        return conn.execute("SELECT p.text, c.label, c.action, c.reviewer FROM corrections c "
                            "JOIN predictions p ON p.id = c.prediction_id "
                            "ORDER BY c.reviewed_at").fetchall()
    finally:
        conn.close()


def test_reviewer_filters_fixes_a_label_with_the_keyboard_and_sees_the_count_change(
        tmp_path, review_ui):
    url = f"sqlite:///{tmp_path}/predictions.db"
    log_predictions(url, [
        [("you are a complete idiot", 0.97, "model-a"), ("what a lovely morning", 0.04, "model-a"),
         ("that referee is blind lol", 0.58, "model-a"), ("go away", 0.66, "model-a")],
        [("this movie was sick", 0.53, "model-b"), ("thanks, see you tomorrow", 0.12, "model-b"),
         ("@user shut it", 0.81, "model-b")],
    ], shadow={0: ["offensive", "not-offensive", "not-offensive", "offensive"]})
    base = review_ui(url)
    folder = shots(tmp_path)
    with chromium_page() as page:
        page.goto(base + "/")
        assert page.locator("#token").is_visible()  # the 401 page is the login form
        log_in(page, base, TOKEN, "alice")
        assert page.locator("#count-unreviewed").inner_text() == "7"
        page.screenshot(path=str(folder / "1-logged-in.png"), full_page=True)

        page.select_option("#f-label", "offensive")
        expect(page.locator("#count-total")).to_have_text("5")
        rows = page.locator("#items tbody tr")
        assert rows.count() == 5
        labels = rows.locator("td.label").all_inner_texts()
        assert set(labels) == {"offensive"}
        # most uncertain first: 0.53, 0.58, 0.66, 0.81, 0.97
        assert rows.first.locator("td.text").inner_text() == "this movie was sick"
        page.screenshot(path=str(folder / "2-filtered.png"), full_page=True)

        page.keyboard.press("j")
        assert page.locator("#items tbody tr.current td.text").inner_text() == \
            "that referee is blind lol"
        page.keyboard.press("1")  # label 1 = not-offensive: a fix
        expect(page.locator("#count-reviewed")).to_have_text("1")
        assert page.locator("#count-unreviewed").inner_text() == "4"
        assert page.locator("#count-fixed").inner_text() == "1"
        assert page.locator("#count-all-reviewed").inner_text() == "1"
        assert "fixed → not-offensive" in rows.nth(1).locator("td.review").inner_text()

        page.keyboard.press("a")  # the cursor moved on: confirm "go away"
        expect(page.locator("#count-reviewed")).to_have_text("2")
        assert page.locator("#count-fixed").inner_text() == "1"
        page.screenshot(path=str(folder / "3-reviewed.png"), full_page=True)

    assert corrections(url) == [("that referee is blind lol", "not-offensive", "fixed", "alice"),
                                ("go away", "offensive", "confirmed", "alice")]
    assert all((folder / name).stat().st_size > 10_000
               for name in ("1-logged-in.png", "2-filtered.png", "3-reviewed.png"))


def test_bulk_confirm_and_shadow_disagreement_filter_in_the_browser(tmp_path, review_ui):
    url = f"sqlite:///{tmp_path}/predictions.db"
    log_predictions(url, [[("fine by me", 0.2, "model-a"), ("you clown", 0.9, "model-a"),
                           ("whatever dude", 0.45, "model-a")]],
                    shadow={0: ["not-offensive", "not-offensive", "offensive"]})
    base = review_ui(url)
    with chromium_page() as page:
        log_in(page, base, TOKEN, "bob")
        page.check("#f-disagree")
        expect(page.locator("#count-total")).to_have_text("2")
        assert set(page.locator("#items tbody tr td.text").all_inner_texts()) == \
            {"you clown", "whatever dude"}
        page.check("#select-all")
        page.click("#bulk-confirm")
        expect(page.locator("#count-reviewed")).to_have_text("2")
        assert page.locator("#count-all-total").inner_text() == "3"
        page.screenshot(path=str(shots(tmp_path) / "bulk.png"), full_page=True)
    assert sorted(corrections(url)) == [("whatever dude", "not-offensive", "confirmed", "bob"),
                                        ("you clown", "offensive", "confirmed", "bob")]


def test_browser_with_a_wrong_token_stays_on_the_login_form(tmp_path, review_ui):
    url = f"sqlite:///{tmp_path}/predictions.db"
    log_predictions(url, [[("hello", 0.1, "model-a")]])
    base = review_ui(url)
    with chromium_page() as page:
        page.goto(base + "/")
        page.fill("#reviewer", "eve")
        page.fill("#token", "not-the-token")
        with page.expect_response(lambda r: r.url.endswith("/login")) as answer:
            page.click("button[type=submit]")
        assert answer.value.status == 403
        assert "Wrong review token" in page.locator("[role=alert]").inner_text()
        assert page.locator("#items").count() == 0


ATTACKER_PAGE = """<!doctype html><html><body>
<form id="f" method="post" enctype="text/plain" action="{ui}/api/corrections">
<input type="hidden" name='{{"items": [{{"id": 1, "label": "offensive"}}], "pad": "' value='"}}'>
<button id="go">win a prize</button></form>
<iframe id="framed" src="{ui}/" width="400" height="300"></iframe>
<script>
fetch("{ui}/api/corrections", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{items: [{{id: 2, label: "offensive"}}]}})}})
  .finally(() => fetch("{ui}/api/corrections/undo", {{method: "POST", mode: "no-cors",
    credentials: "include", body: JSON.stringify({{ids: [1, 2]}})}}))
  .finally(() => {{ document.title = "fetched"; }});
</script></body></html>"""


@contextmanager
def attacker_site(ui: str) -> Iterator[str]:
    """A page on another port of the same host (same site, other origin) that tries CSRF."""
    page = ATTACKER_PAGE.format(ui=ui).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_a_page_on_another_port_cannot_save_corrections_or_frame_the_ui(tmp_path, review_ui):
    url = f"sqlite:///{tmp_path}/predictions.db"
    log_predictions(url, [[("you are a complete idiot", 0.97, "model-a"),
                           ("what a lovely morning", 0.04, "model-a")]])
    base = review_ui(url)
    with chromium_page() as page, attacker_site(base) as evil:
        log_in(page, base, TOKEN, "alice")
        framed_requests = []
        page.on("response", lambda r: framed_requests.append((r.url, r.status)))
        page.goto(evil)
        expect(page).to_have_title("fetched")
        framed = [f for f in page.frames if f.parent_frame is not None]
        assert framed and not framed[0].query_selector("#items"), "the UI rendered in a frame"
        with page.expect_navigation():
            page.click("#go")  # the text/plain form post
        assert corrections(url) == []
        posts = [status for u, status in framed_requests if u.startswith(base + "/api/")]
        assert len(posts) == 3 and all(status in (403, 415) for status in posts), posts
