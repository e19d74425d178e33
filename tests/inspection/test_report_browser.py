"""The HTML report of `dars inspect` in a real browser: headless Chromium opens it from disk (file://, no
server); every <img> must have loaded (naturalWidth > 0), and the page must fit the window's width with the
legend shown whole.

Needs the Debian package ``chromium`` (or set CHROMIUM to a Chrome/Chromium binary); skipped without it.
"""

from __future__ import annotations

import html
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
from pipeline_lib.data.classes import CITYSCAPES
from pipeline_lib.drawing.panels import legend_image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = os.environ.get("CHROMIUM") or next((b for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed "
                                "(apt-get install chromium, or set CHROMIUM=/path/to/chrome)")

# Appended to a copy of the page: once everything has loaded, report(found) writes ``found`` as JSON into
# the DOM that --dump-dom prints.
REPORT_FUNCTION = """<script>
function report(found) {
  const out = document.createElement("pre");
  out.id = "check";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
}
</script>"""

# Each image's src and naturalWidth.
CHECK_SCRIPT = """<script>
window.addEventListener("load", () =>
  report([...document.images].map(i => [i.getAttribute("src"), i.naturalWidth])));
</script>"""

# How wide the page is against the window (clientWidth: the viewport without its vertical scrollbar), where
# each gallery image ends, the legend's shown and natural width, and on how many lines each of the gallery's
# facts ("kept 11.6 %") is set: one Range rectangle per line.
LAYOUT_SCRIPT = """<script>
window.addEventListener("load", () => {
  const root = document.documentElement;
  const facts = [];
  const texts = document.createTreeWalker(document.querySelector(".gallery"), NodeFilter.SHOW_TEXT);
  for (let node = texts.nextNode(); node; node = texts.nextNode()) {
    if (/^(kept|accuracy) /.test(node.data)) {
      const range = document.createRange();
      range.selectNodeContents(node);
      facts.push([node.data, range.getClientRects().length]);
    }
  }
  const legend = document.querySelector('img[src="legend.png"]');
  report({scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, innerWidth: window.innerWidth,
          images: [...document.querySelectorAll(".gallery img")].map(
            i => [i.getAttribute("src"), i.getBoundingClientRect().right]),
          legend: {shown: legend.getBoundingClientRect().width, natural: legend.naturalWidth,
                   right: legend.getBoundingClientRect().right},
          facts});
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


def page_check(report: Path, tmp_path: Path, script: str, *args: str):
    """What ``script`` passed to report() in ``report/index.html`` after Chromium (with ``args``) loaded it
    from disk."""
    page = (report / "index.html").read_text()
    check = report / "_check.html"  # same folder, so relative links resolve the same way
    check.write_text(page.replace("</body>", REPORT_FUNCTION + script + "</body>"))
    try:
        dom = _chromium(tmp_path, "--virtual-time-budget=10000", *args, "--dump-dom", check.as_uri())
    finally:
        check.unlink()
    match = re.search(r'<pre id="check">(.*?)</pre>', dom, re.S)
    assert match, "the check script did not run:\n" + dom[-1000:]
    return json.loads(html.unescape(match.group(1)))


def loaded_images(report: Path, tmp_path: Path) -> list[tuple[str, int]]:
    """(src, naturalWidth) of every <img> of ``report/index.html`` after Chromium loaded it from disk."""
    return [(src, width) for src, width in page_check(report, tmp_path, CHECK_SCRIPT)]


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


@pytest.mark.parametrize("width", [1280, 1024])
def test_the_report_fits_the_window_and_shows_the_legend_whole(report, tmp_path, width):
    page = tmp_path / "report"
    shutil.copytree(report, page)
    # The fixture's 4 classes put the legend's ignored entry in its first column; Cityscapes' 19 put it in the
    # last, at the image's right edge, where the fixed-width legend cut it ("ignored (255): no pseudo lal").
    legend = legend_image(CITYSCAPES.names, CITYSCAPES.colors)
    Image.fromarray(legend).save(page / "legend.png")
    layout = page_check(page, tmp_path, LAYOUT_SCRIPT, f"--window-size={width},900")
    viewport = layout["clientWidth"]
    assert layout["innerWidth"] == width
    assert layout["scrollWidth"] <= viewport <= layout["innerWidth"]  # no horizontal scrolling
    assert len(layout["images"]) >= 4 * 4
    assert [(src, right) for src, right in layout["images"] if right > viewport] == []
    assert layout["facts"] and [(text, lines) for text, lines in layout["facts"] if lines != 1] == []
    shown = layout["legend"]
    assert shown["natural"] == legend.shape[1] and abs(shown["shown"] - shown["natural"]) < 0.5
    assert shown["right"] <= viewport
    ink = np.flatnonzero((legend != 255).any(axis=(0, 2)))  # columns with anything but white background
    assert legend.shape[1] - 1 - ink.max() >= 8  # a margin after the last label: nothing cut at the edge

    shot = tmp_path / f"report-{width}x900.png"  # kept with tmp_path, to look at
    _chromium(tmp_path, f"--window-size={width},900", f"--screenshot={shot}", (page / "index.html").as_uri())
    with Image.open(shot) as image:
        assert image.size == (width, 900)
