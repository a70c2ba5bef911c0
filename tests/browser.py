"""Debian's headless Chromium driven by Selenium, to look at pages as a person would.

Only /usr/bin/chromium and /usr/bin/chromedriver (apt packages chromium, chromium-driver) are used: Selenium
Manager (which would download a driver or a browser) is replaced by a function that fails the test.
Console messages and every URL the page requested are recorded (Chrome's browser and performance logs).

Also a command: `python3 tests/browser.py PAGE.html OUT.png [MAX_HEIGHT]` writes a screenshot of PAGE (the
whole page, or its top MAX_HEIGHT pixels); docs/report.png is made so from the demo's report.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common import selenium_manager

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
)  # fmt: skip

# walks open shadow roots (Bokeh renders every figure into one): [[width, height, painted pixels], ...]
CANVAS_PIXELS_JS = """
const out = [];
function walk(root) {
  for (const el of root.querySelectorAll("*")) {
    if (el.tagName === "CANVAS" && el.width > 0 && el.height > 0) {
      const ctx = el.getContext("2d");
      if (ctx) {
        const d = ctx.getImageData(0, 0, el.width, el.height).data;
        let painted = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] > 0 && !(d[i] > 245 && d[i + 1] > 245 && d[i + 2] > 245)) painted++;
        }
        out.push([el.width, el.height, painted]);
      }
    }
    if (el.shadowRoot) walk(el.shadowRoot);
  }
}
walk(document);
return out;
"""

BOKEH_STATE_JS = """
if (!window.Bokeh || !Bokeh.documents || !Bokeh.documents.length) return null;
const doc = Bokeh.documents[0];
const types = {};
for (const m of doc.all_models) {
  const n = m.constructor.__qualified__ || m.constructor.name;
  types[n] = (types[n] || 0) + 1;
}
return {roots: doc.roots().length, models: doc.all_models.size, views: Object.keys(Bokeh.index).length,
        figures: types["Figure"] || 0, types: types};
"""


class SeleniumManagerUsed(AssertionError):
    pass


def _no_selenium_manager(*_args: Any, **_kwargs: Any) -> Any:
    raise SeleniumManagerUsed("Selenium Manager was invoked: it would download a driver or a browser")


class Browser:
    """One headless Chromium; use as a context manager."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        selenium_manager.SeleniumManager.binary_paths = _no_selenium_manager  # type: ignore[method-assign]
        os.environ["SE_OFFLINE"] = "true"  # and, should anything still call it, Selenium Manager stays offline
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(60)
        self.console: list[dict[str, Any]] = []
        self.requests: list[str] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, url: str, timeout: float = 30, min_painted: int | None = None) -> dict[str, Any]:
        """Load url and wait until Bokeh has rendered every root and painted every figure (or `min_painted`
        of them: a page may hide some); returns the state. The logs are drained first, so `console` and
        `requests` then hold what this page did."""
        self.driver.get("about:blank")
        self.driver.get_log("browser")
        self.driver.get_log("performance")
        self.console, self.requests = [], []
        self.driver.get(url)
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.driver.execute_script(BOKEH_STATE_JS)
            want = state["figures"] if state and min_painted is None else min_painted
            if state and state["views"] >= state["roots"] > 0 and len(self.painted()) >= want:
                break
            time.sleep(0.25)
        time.sleep(0.3)  # let the last paint finish
        self.collect_logs()
        return state or {}

    def canvases(self) -> list[list[int]]:
        return self.driver.execute_script(CANVAS_PIXELS_JS)

    def painted(self, min_width: int = 200) -> list[list[int]]:
        """The chart-sized canvases with something drawn on them (each figure has one, plus a blank overlay)."""
        return [c for c in self.canvases() if c[0] >= min_width and c[2] > 0]

    def collect_logs(self) -> None:
        self.console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])

    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.console if m.get("level") == "SEVERE"]

    def table(self, table_id: str, part: str = "tbody") -> list[list[str]]:
        """A table's cells (their sort values, `data-v`) as rows of strings."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map("
            "r => Array.from(r.cells).map(c => c.dataset.v))",
            f"#{table_id} {part} tr",
        )

    def screenshot(self, path: str | Path, max_height: int | None = None) -> Path:
        """The whole page (beyond the window) as a PNG, or its top `max_height` pixels."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = dict(metrics.get("cssContentSize") or metrics["contentSize"])
        if max_height:
            size["height"] = min(size["height"], max_height)
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True,
             "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}},
        )  # fmt: skip
        out = Path(path)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out


def main(argv: list[str]) -> int:
    page, out = Path(argv[0]).resolve(), argv[1]
    max_height = int(argv[2]) if len(argv) > 2 else None
    with Browser(width=1300) as browser:
        state = browser.open(page.as_uri())
        state.pop("types", None)
        browser.screenshot(out, max_height)
        print(f"{out}: {state}, {len(browser.errors())} console errors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
