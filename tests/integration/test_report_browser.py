"""A real browser opens the report page: Debian's chromium, headless, with the network off.

A copy of the page gets a small inline script that counts the charts the browser laid out with a
non-zero size and writes the count into the DOM, which --dump-dom prints. A screenshot of the page
(unchanged) must show more than a blank page.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Orch
from tests.orchestrator.study_builder import Grid, build_study, open_home

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
COUNT_CHARTS = """<script>
(function () {
  var charts = Array.prototype.slice.call(document.querySelectorAll("figure svg, figure img"));
  var sized = charts.filter(function (e) { var r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; });
  var out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({figures: document.querySelectorAll("figure").length, sized: sized.length,
    widths: sized.map(function (e) { return Math.round(e.getBoundingClientRect().width); })});
  document.body.appendChild(out);
})();
</script>"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI must install it: see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


def test_chromium_renders_every_chart(orch: Orch, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    browser = chromium()
    store = open_home(orch.home, monkeypatch)
    build_study(store, Grid(scored={("bn", 1, 0)}))
    store.dispose()
    page = tmp_path / "report.html"
    written = orch.run("report", "--study", "norms-groups", "--html", str(page), check=True).stderr
    names = re.search(r"charts: (.*)\)", written).group(1).split(", ")  # type: ignore[union-attr]
    assert names == ["final", "curves", "groups", "pareto"]

    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", COUNT_CHARTS + "</body>"))
    dom = run_chromium(browser, tmp_path / "profile", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom.stdout)
    assert found, (dom.stdout[-500:], dom.stderr[-2000:])
    check = json.loads(found.group(1))
    assert check["figures"] == len(names) and check["sized"] == len(names), check
    assert all(width > 200 for width in check["widths"]), check

    shot = tmp_path / "page.png"
    run_chromium(browser, tmp_path / "profile", "--window-size=1200,3000", f"--screenshot={shot}", page.as_uri())
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, tables and chart colours, not a blank page


MEASURE_WIDTH = """<script>
(function () {
  var out = document.createElement("pre");
  out.id = "width-check";
  out.textContent = JSON.stringify({page: document.documentElement.scrollWidth, window: window.innerWidth,
    charts: Array.prototype.map.call(document.querySelectorAll("figure svg"),
                                     function (e) { return Math.round(e.getBoundingClientRect().width); })});
  document.body.appendChild(out);
})();
</script>"""


def test_page_fits_a_phone(orch: Orch, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """At a phone's width the page is no wider than the window (it was 716 px in a 500 px window, its tables
    cut at the edge): a wide table or chart scrolls in its own box, and a chart keeps a readable size."""
    browser = chromium()
    store = open_home(orch.home, monkeypatch)
    build_study(store)
    store.dispose()
    page = tmp_path / "report.html"
    orch.run("report", "--study", "norms-groups", "--html", str(page), check=True)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE_WIDTH + "</body>"))
    dom = run_chromium(browser, tmp_path / "profile", "--window-size=390,2000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="width-check">(.*?)</pre>', dom.stdout)
    assert found, (dom.stdout[-500:], dom.stderr[-2000:])
    check = json.loads(found.group(1))
    assert check["page"] <= check["window"], check
    assert check["charts"] and all(width >= 600 for width in check["charts"]), check
