"""In Chromium: another site cannot frame the UI (clickjacking), cannot sign a browser in with
a forged form (login CSRF), and a crafted link cannot put its text on a page."""

import http.server
import re
import threading
from collections.abc import Iterator

import pytest

from tests.fixtures.browser import BROWSER_MARKS, chromium, sign_in
from tests.fixtures.gateway import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.fixtures.infra import free_port
from tests.security.api_process import ApiProcess, run_api

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with run_api(tmp_path_factory.mktemp("framing") / "data") as process:
        yield process


@pytest.fixture(scope="module")
def evil_site(api: ApiProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another origin serving a page that frames the UI and a form that posts to its login."""
    root = tmp_path_factory.mktemp("evil")
    (root / "frame.html").write_text(f'<iframe id="ui" src="{api.url}/login"></iframe>')
    (root / "login.html").write_text(
        f'<form id="f" method="post" action="{api.url}/login">'
        f'<input name="username" value="{ADMIN_USERNAME}">'
        f'<input name="password" value="{ADMIN_PASSWORD}">'
        '<input name="login_csrf" value="guessed"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    port = free_port()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{port}"
    server.shutdown()


def test_another_site_can_neither_frame_the_ui_nor_sign_a_browser_in(
    api: ApiProcess, evil_site: str
) -> None:
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)

        blocked: list[str] = []
        page.on("console", lambda m: blocked.append(m.text) if "frame" in m.text else None)
        page.goto(f"{evil_site}/frame.html")
        page.wait_for_timeout(1000)
        frame = page.frame_locator("#ui")
        framed_form = frame.locator("input[name=username]").count()

        page.goto(f"{evil_site}/login.html")
        page.wait_for_load_state()
        page.wait_for_timeout(1000)
        forged_text = page.content()
        cookies = {c["name"] for c in context.cookies(api.url)}

        page.goto(f"{api.url}/login?error=Call+555-0100+now&notice=Call+555-0100+now")
        shown = page.locator("main").inner_text()
        sign_in(page)
        context.close()

    assert framed_form == 0, "the login form rendered inside another site's frame"
    assert any(re.search(r"frame-ancestors|X-Frame-Options", m) for m in blocked), blocked
    assert "sign-in form expired or was sent from another site" in forged_text
    assert "pulmogate_session" not in cookies
    assert "555-0100" not in shown
