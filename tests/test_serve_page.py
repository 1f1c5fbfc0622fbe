"""The web page in headless Chromium: upload an image, see the overlay, legend and timing."""

from __future__ import annotations

import base64
import io
import os
import tempfile

import httpx
import numpy as np
import pytest
from PIL import Image

from atrous.serve import create_app
from atrous.serve.security import LOOPBACK_HOSTS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent (apt-get install chromium)"
)


@pytest.fixture
def page_url(small_checkpoint, live_server):
    """The page as `atrous serve` on loopback serves it: Host allow-list and CSP in force."""
    return live_server(create_app(small_checkpoint, threads=2, allowed_hosts=LOOPBACK_HOSTS))


@pytest.fixture
def browser_page():
    """A Chromium page; on teardown, asserts that no Content-Security-Policy blocked anything."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        blocked: list[str] = []
        try:
            page = context.new_page()
            page.on(
                "console",
                lambda m: "Content Security Policy" in m.text and blocked.append(m.text),
            )
            yield page
        finally:
            context.close()
        assert blocked == [], blocked


def test_upload_shows_overlay_legend_and_timing(page_url, browser_page, tmp_path, rng):
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    photo = np.asarray(Image.fromarray(small).resize((96, 72), Image.BILINEAR))
    image_path = tmp_path / "photo.png"
    Image.fromarray(photo).save(image_path)
    expected = httpx.post(
        f"{page_url}/v1/segment?format=json&mask=true", content=image_path.read_bytes()
    ).json()

    page = browser_page
    page.goto(page_url + "/")
    # a selector, not wait_for_function: polling a string predicate needs eval, which the page's
    # Content-Security-Policy forbids (it failed whenever the card was not there at once)
    page.wait_for_selector("#model:has-text('classes')")
    page.set_input_files("#file", str(image_path))
    page.wait_for_selector("body[data-state=done]", timeout=30_000)

    assert page.is_visible("#overlay") and page.is_visible("#photo")
    size = page.evaluate("[overlay.width, overlay.height, photo.naturalWidth, photo.naturalHeight]")
    assert size == [96, 72, 96, 72]
    names = page.locator("#legend .name").all_inner_texts()
    assert names == [c["name"] for c in expected["classes"]]
    # the canvas shows every non-background pixel of the server's mask, background transparent
    painted = page.evaluate(
        """() => { const d = overlay.getContext('2d').getImageData(0, 0, 96, 72).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"""
    )
    background = sum(c["fraction"] for c in expected["classes"] if c["name"] == "background")
    assert painted == round((1 - background) * 96 * 72)
    assert painted > 0
    assert "infer" in page.inner_text("#timing") and "ms" in page.inner_text("#timing")

    page.fill("#opacity", "25")
    opacity = page.evaluate("getComputedStyle(overlay).opacity")
    assert float(opacity) == pytest.approx(0.25)
    assert page.inner_text("#opacity-value") == "25%"


def test_dropping_an_image_replaces_the_overlay(page_url, browser_page, rng):
    page = browser_page
    page.goto(page_url + "/")
    for width, height in ((40, 30), (50, 70)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        page.evaluate(
            """(b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const data = new DataTransfer();
                data.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
                document.body.dataset.state = "idle";
                drop.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
            }""",
            base64.b64encode(buffer.getvalue()).decode(),
        )
        page.wait_for_selector("body[data-state=done]", timeout=30_000)
        assert page.evaluate("[overlay.width, overlay.height]") == [width, height]
        assert page.locator("#legend li").count() >= 1


def test_page_reports_a_refused_upload(page_url, browser_page, tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    page = browser_page
    page.goto(page_url + "/")
    page.set_input_files("#file", str(text_file))
    page.wait_for_selector("body[data-state=error]", timeout=30_000)
    assert "415" in page.inner_text("#error") and "not an image" in page.inner_text("#error")


def test_static_assets_are_served(page_url):
    for path, kind in (
        ("/", "text/html"),
        ("/static/app.js", "javascript"),
        ("/static/style.css", "text/css"),
    ):
        response = httpx.get(page_url + path)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert httpx.get(page_url + "/static/missing.js").status_code == 404
