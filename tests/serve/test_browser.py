"""End to end in headless Chromium: the page at / uploads a real photo and shows its mask and cutout.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and ``selenium`` (the
test extra). Locally the test skips when they are missing; in CI (``CI=true``) it fails.
"""
import os
import shutil
import socket
import tempfile
import threading
import time

import pytest

from tests.infer.helpers import photos, shared_predictor

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

CHROMIUM = os.environ.get("CSNET_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CSNET_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-extensions", "--window-size=1200,900"]

PIXEL_STATS = """
const stats = (id) => {
  const img = document.getElementById(id);
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const d = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let lo = 255, hi = 0, alo = 255, ahi = 0;
  for (let i = 0; i < d.length; i += 4) {
    lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); alo = Math.min(alo, d[i + 3]); ahi = Math.max(ahi, d[i + 3]);
  }
  return {width: canvas.width, height: canvas.height, min: lo, max: hi, alpha_min: alo, alpha_max: ahi};
};
return {original: stats("original"), mask: stats("mask"), cutout: stats("cutout"),
        status: document.getElementById("status").textContent};
"""


def _require(condition, message):
    if not condition:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def server_url():
    uvicorn = pytest.importorskip("uvicorn")
    from csnet.serve.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # a free loopback port, held from now on: no race
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(shared_predictor()), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser():
    _require(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER),
             f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _require(False, "needs selenium: pip install selenium (the test extra)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download drivers
    profile = tempfile.mkdtemp(prefix="csnet-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_page_shows_mask_and_cutout_of_an_uploaded_photo(server_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = photos(1)[0]
    browser.get(server_url + "/")
    assert "csnet" in browser.title
    WebDriverWait(browser, 20).until(lambda d: "Model" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    state = browser.find_element(By.TAG_NAME, "body").get_attribute("data-state")
    assert state == "done", browser.find_element(By.ID, "status").text
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "return ['original', 'mask', 'cutout'].every(id => {"
        " const im = document.getElementById(id); return im.complete && im.naturalWidth > 0; })"))
    stats = browser.execute_script(PIXEL_STATS)
    from PIL import Image

    width, height = Image.open(photo).size
    for name in ("original", "mask", "cutout"):
        assert (stats[name]["width"], stats[name]["height"]) == (width, height), name
    assert stats["mask"]["max"] - stats["mask"]["min"] > 50  # a real mask, not a flat image
    assert stats["mask"]["alpha_min"] == 255  # the mask is opaque gray
    assert stats["cutout"]["alpha_max"] - stats["cutout"]["alpha_min"] > 50  # transparency follows the mask
    assert stats["status"].startswith("Done")
    assert browser.find_element(By.ID, "download").get_attribute("href").startswith("blob:")
