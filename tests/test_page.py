"""serve.py's page in a real browser: headless Chromium (Debian's package; .ci/run installs it), driven
by Playwright.  A photo uploaded shows its emotion; the camera mode, fed a video file through Chromium's
fake camera, draws a labelled box.  Screenshots of both are saved (FERKIT_SCREENSHOTS=DIR keeps them)."""
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import ROOT
from test_serve import SAMPLE, Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium)")


def write_y4m(path, frames=20, size=(640, 480)):
    """A short raw video for Chromium's fake camera: the sample face moving across a grey frame, 4:2:0."""
    w, h = size
    face = cv2.resize(cv2.imread(SAMPLE), (360, 360))
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for k in range(frames):
            frame = np.full((h, w, 3), 90, np.uint8)
            x = 40 + 10 * k
            frame[60:420, x:x + 360] = face
            yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # Y plane, then U and V at half size
            f.write(b"FRAME\n" + yuv.tobytes())


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright
    video = tmp_path_factory.mktemp("camera") / "face.y4m"
    write_y4m(video)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}", "--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def screenshot(page, tmp_path, name):
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("FERKIT_SCREENSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(path, os.path.join(keep, name))
    return path


def test_an_uploaded_photo_shows_its_faces_and_bars(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")  # the shipped models, listed from /v1/models
    assert page.locator("#model").input_value() == "acnn_alstm_ferplus"
    page.set_input_files("#files", os.path.join(ROOT, "samples", "astronaut.png"))
    page.wait_for_selector(".card .face", timeout=20000)
    card = page.locator(".card").first
    assert "1 face" in card.locator("h3").inner_text()
    assert "face 1: happy" in card.inner_text()
    assert card.locator(".bars .bar").count() == 7
    assert screenshot(page, tmp_path, "page_photo.png").stat().st_size > 10000
    assert not errors, errors
    page.close()


def test_the_camera_mode_draws_a_labelled_box(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.click("#tab-camera")
    page.click("#camera-toggle")
    page.wait_for_selector("#live-bars .bars", timeout=20000)  # a face's bars: an answer came back
    page.wait_for_function("parseInt(document.querySelector('#fps').textContent) > 0", timeout=20000)
    # Boxes and labels are drawn on the overlay: count its painted pixels.
    painted = page.evaluate("""() => {
        const c = document.querySelector('#overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }""")
    assert painted > 500, painted
    assert screenshot(page, tmp_path, "page_camera.png").stat().st_size > 10000
    page.click("#camera-toggle")
    assert page.locator("#camera-toggle").inner_text() == "Start the camera"
    assert not errors, errors
    page.close()
