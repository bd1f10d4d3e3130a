"""A real Streamlit server and a real headless Chromium, for the browser tests."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def need_browser():
    """In CI (ZTH_REQUIRE_BROWSER=1) a missing browser fails the test; elsewhere it skips, saying why."""
    if not os.path.exists(CHROMIUM):
        msg = f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium"
        if os.environ.get("ZTH_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(data_dir, env=None):
    port = free_port()
    log = open(Path(data_dir) / "server.log", "wb")
    p = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
                          "--server.port", str(port), "--server.address", "127.0.0.1",
                          "--server.headless", "true"],
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                         env={**os.environ, "ZTH_DATA_DIR": str(data_dir), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if p.poll() is not None or time.time() - t0 > 60:
                raise RuntimeError("streamlit did not start: " + (Path(data_dir) / "server.log").read_text()[-2000:])
            time.sleep(0.3)
        yield url
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()


@contextmanager
def chromium_page(width=1400, height=1000):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, errors
        finally:
            browser.close()


def no_exception_on_page(page):
    """No Streamlit exception box anywhere on the page (its text is the failure message)."""
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']").first.inner_text()


def wait_idle(page, timeout=30):
    """Wait until the app has finished its script run (Streamlit's "Running..." status is gone), so a
    click lands on the widgets of the finished run rather than racing the rerun of the previous click."""
    page.wait_for_timeout(200)
    page.wait_for_function(
        """() => !Array.from(document.querySelectorAll('[data-testid="stStatusWidget"]'))
                     .some(e => /Running/i.test(e.innerText))""", timeout=timeout * 1000)
