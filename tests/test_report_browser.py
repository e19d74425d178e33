"""The HTML report of `dars inspect` in a real browser: headless Chromium opens it from disk (file://, no
server) and every <img> must have loaded (naturalWidth > 0).

Needs the Debian package ``chromium`` (or set CHROMIUM to a Chrome/Chromium binary); skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection_state import build_project, run_inspect

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = os.environ.get("CHROMIUM") or next((b for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed "
                                "(apt-get install chromium, or set CHROMIUM=/path/to/chrome)")

# Appended to a copy of the page: once everything has loaded, list each image's src and naturalWidth.
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const found = [...document.images].map(i => [i.getAttribute("src"), i.naturalWidth]);
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def loaded_images(report: Path, tmp_path: Path) -> list[tuple[str, int]]:
    """(src, naturalWidth) of every <img> of ``report/index.html`` after Chromium loaded it from disk."""
    page = (report / "index.html").read_text()
    check = report / "_image_check.html"  # same folder, so relative links resolve the same way
    check.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    try:
        dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", check.as_uri())
    finally:
        check.unlink()
    match = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S)
    assert match, "the check script did not run:\n" + dom[-1000:]
    return [(src, width) for src, width in json.loads(match.group(1).replace("&quot;", '"'))]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    project = build_project(tmp_path_factory.mktemp("project"))
    out = tmp_path_factory.mktemp("runs") / "report"
    code, output = run_inspect("--round", "r1", "--repo", project, "--out", out, "--random", "4")
    assert code == 0, output
    return out


def test_every_image_of_the_report_loads_from_disk(report, tmp_path):
    expected = re.findall(r"<img src=", (report / "index.html").read_text())
    images = loaded_images(report, tmp_path)
    assert len(images) == len(expected) >= 4 * 5 + 3
    assert [src for src, width in images if width <= 0] == []


def test_the_check_notices_a_missing_image(report, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(report, broken)
    victim = next((broken / "images").glob("*_overlay.png"))
    victim.unlink()
    images = dict(loaded_images(broken, tmp_path))
    assert images[f"images/{victim.name}"] == 0
    assert sum(1 for width in images.values() if width == 0) == 1


def test_screenshot_of_the_report_renders_content(report, tmp_path):
    shot = tmp_path / "report.png"
    _chromium(tmp_path, "--hide-scrollbars", "--window-size=1280,1800", f"--screenshot={shot}",
              (report / "index.html").as_uri())
    with Image.open(shot) as image:
        assert image.size == (1280, 1800)
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, tables, panels: not a blank page
