"""Screenshots of the service's page (docs/page-*.png): a cutout, the same on a colour, and a failed upload.

    python tools/page_screenshots.py -o docs        # needs chromium, chromium-driver, selenium, csnet[serve,refine]

The photo is drawn here (a shaded ball on a textured floor and wall), so the screenshots carry no dataset's
image; the model is the bundled one. The PNGs are quantized to 128 colours to stay small.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-extensions"]


def drawn_photo(width: int = 640, height: int = 480) -> np.ndarray:
    """A wall over a floor, both with noise texture, and an orange ball with light from the upper left."""
    rng = np.random.default_rng(3)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = 0.62 * height
    wall = np.array([150, 165, 180], np.float32) + 25 * (ys / height)[..., None]
    floor = np.array([120, 100, 80], np.float32) + 30 * ((ys - horizon) / height)[..., None]
    image = np.where((ys < horizon)[..., None], wall, floor)
    image += rng.normal(0, 7, image.shape).astype(np.float32)
    cx, cy, r = 0.55 * width, 0.52 * height, 0.24 * height
    shadow = ((xs - cx - 0.3 * r) / (1.3 * r)) ** 2 + ((ys - cy - 0.95 * r) / (0.3 * r)) ** 2 < 1
    image[shadow] *= 0.6
    d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / r ** 2
    ball = d2 < 1
    z = np.sqrt(np.clip(1 - d2, 0, 1))
    light = np.clip(0.25 + 0.75 * (-(xs - cx) / r * 0.4 - (ys - cy) / r * 0.5 + z * 0.75), 0.15, 1.2)
    image[ball] = (np.array([240, 120, 30], np.float32) * light[..., None])[ball]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="docs", help="folder for page-*.png (default docs)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from csnet.infer.predictor import Predictor
    from csnet.serve.app import create_app
    from csnet.serve.server import build_server

    work = Path(tempfile.mkdtemp(prefix="csnet-screenshots-"))
    photo = work / "ball.jpg"
    Image.fromarray(drawn_photo()).save(photo, quality=92)
    (work / "notes.jpg").write_bytes(b"these are notes, not a JPEG")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = build_server(create_app(Predictor()), log_level="warning")
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in FLAGS + ["--window-size=1000,900", f"--user-data-dir={work / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
    out = Path(args.output)

    def settle(*states: str) -> None:
        WebDriverWait(driver, 120).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in states)
        time.sleep(0.5)

    def shoot(name: str) -> None:
        path = out / f"page-{name}.png"
        driver.save_screenshot(str(path))
        Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)
        print(path, path.stat().st_size, "bytes")

    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        WebDriverWait(driver, 20).until(lambda d: "Model" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(photo))
        settle("done")
        shoot("cutout")
        driver.find_element(By.CSS_SELECTOR, "input[name=backdrop][value=color]").click()
        settle("done")
        shoot("colour")
        driver.find_element(By.ID, "file").send_keys(str(work / "notes.jpg"))
        settle("error")
        shoot("error")
    finally:
        driver.quit()
        server.should_exit = True
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
