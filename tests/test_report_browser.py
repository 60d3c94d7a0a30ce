"""The report in a real browser: headless Chromium loads index.html with no console error, no broken image,
no horizontal page scroll at 1200 px, and leaves a full-page screenshot.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending in
a NUL byte on fds 3 and 4), so no Python package is needed. Skipped with a message when no chromium is
installed (Debian: apt-get install chromium).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from report_helpers import report_outputs, report_settings

from scisr.io.files import write_png16
from scisr.report import build_report

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium found: apt-get install chromium to run this")
WIDTH = 1200
TIMEOUT = 60.0
IMAGES = "JSON.stringify(Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]))"
# tables wider than the page body, or scrolling inside themselves: [heading before the table, right edge, body right]
WIDE_TABLES = """JSON.stringify(Array.from(document.querySelectorAll('table')).map(t => {
  let h = t.previousElementSibling; while (h && !/^H[1-4]$/.test(h.tagName)) { h = h.previousElementSibling; }
  return [h ? h.textContent : '', t.getBoundingClientRect().right, document.body.getBoundingClientRect().right,
          t.scrollWidth - t.clientWidth];
}).filter(r => r[1] > r[2] + 1 || r[3] > 1))"""


class Chromium:
    """A headless Chromium and one page session, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()
        # move the child's ends above fd 4 first, so the dup2 onto 3 and 4 cannot clobber one of them
        child_r = fcntl.fcntl(commands_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(replies_w, fcntl.F_DUPFD, 10)
        for fd in (commands_r, replies_w):
            os.close(fd)

        def plumb() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.process = subprocess.Popen(
            [
                BROWSER,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                f"--window-size={WIDTH},900",
                "about:blank",
            ],
            preexec_fn=plumb,
            pass_fds=(3, 4, child_r, child_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(child_r)
        os.close(child_w)
        self._buffer, self._next_id, self.events = b"", 0, []
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page, flatten=True)["sessionId"]

    def _message(self, deadline: float) -> dict:
        """The next message from the browser."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, *, page: bool = False, **params) -> dict:
        """Send one command (to the page session when `page`) and return its result; keep events."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if page:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        """Wait for an event of the page session."""
        deadline = time.monotonic() + TIMEOUT
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        """Ask the browser to quit; kill it if it does not."""
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


def render(html: Path, screenshot: Path, profile: Path) -> dict:
    """Load `html` at 1200 px width; return console errors, image states, page width; save a full-page PNG."""
    browser = Chromium(profile)
    try:
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable", page=True)
        browser.call("Page.navigate", page=True, url=html.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        images = json.loads(
            browser.call("Runtime.evaluate", page=True, expression=IMAGES, returnByValue=True)["result"]["value"]
        )
        width = browser.call(
            "Runtime.evaluate", page=True, expression="document.documentElement.scrollWidth", returnByValue=True
        )["result"]["value"]
        wide = json.loads(
            browser.call("Runtime.evaluate", page=True, expression=WIDE_TABLES, returnByValue=True)["result"]["value"]
        )
        height = browser.call("Page.getLayoutMetrics", page=True)["cssContentSize"]["height"]
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            page=True,
            width=WIDTH,
            height=int(min(height, 16000)),
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = browser.call("Page.captureScreenshot", page=True, format="png", captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = []
        for event in browser.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif event.get("method") == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(f"{params['entry'].get('text')} {params['entry'].get('url', '')}")
        return {"errors": errors, "images": images, "width": width, "height": height, "wide_tables": wide}
    finally:
        browser.close()


def _constructed_report(root: Path) -> Path:
    """A report from small generated inputs: 3 models x 2 datasets, with panels and a wide model list."""
    rng = np.random.default_rng(0)
    models = ["bicubic", "generic", "mri", "mri_ft", "astro", "pretrained"]
    datasets = ["mri", "astro", "generic"]
    ids = [f"img{i}" for i in range(7)]
    scores, tests, all_predictions = {}, {}, {}
    for model in models:
        for k, dataset in enumerate(datasets):
            rmse = 0.04 - 0.002 * models.index(model) * (1 + k) / 3 + 0.001 * rng.standard_normal(len(ids))
            frame = pd.DataFrame({"image_id": ids, "rmse": rmse, "psnr": -20 * np.log10(rmse), "ssim": 1 - 3 * rmse})
            path = root / "score" / model / f"{dataset}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, sep="\t", index=False)
            scores.setdefault(model, {})[dataset] = path
    histories = {}
    for model in ("generic", "mri", "mri_ft", "astro"):
        it = np.arange(0, 1100, 100)
        val = 0.04 - 0.01 * (1 - np.exp(-it / 300))
        path = root / "models" / model / "history.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                "iteration": it,
                "stage": np.where(it < 800, "pixel", "gan"),
                "val_rmse": val,
                "val_psnr": -20 * np.log10(val),
            }
        ).to_csv(path, sep="\t", index=False)
        histories[model] = path
    y, x = np.mgrid[:96, :96]
    for dataset in datasets:
        hr = np.clip(0.5 + 0.3 * np.sin(x / 4) * np.cos(y / 6) + 0.03 * rng.standard_normal((96, 96)), 0, 1)
        test = root / "split" / dataset / "test"
        write_png16(test / "HR" / "img0.png", hr)
        write_png16(test / "LR" / "img0.png", hr.reshape(24, 4, 24, 4).mean(axis=(1, 3)))
        predictions = {}
        for j, model in enumerate(models):
            write_png16(
                root / "infer" / model / dataset / "img0.png",
                np.clip(hr + 0.01 * (6 - j) * rng.standard_normal(hr.shape), 0, 1),
            )
            predictions[model] = root / "infer" / model / dataset
        tests[dataset] = test
        for model, folder in predictions.items():
            all_predictions.setdefault(model, {})[dataset] = folder
    out = root / "report"
    build_report(
        {"scores": scores, "predictions": all_predictions, "histories": histories, "tests": tests},
        report_outputs(out, datasets),
        report_settings(title="SciSR browser check", degradations={"mri": "kspace"}),
    )
    return out / "index.html"


def _check(result: dict) -> None:
    assert result["errors"] == [], f"console errors: {result['errors']}"
    broken = [alt for alt, complete, width in result["images"] if not complete or width == 0]
    assert result["images"] and not broken, f"broken images: {broken}"
    assert result["width"] <= WIDTH, f"the page scrolls sideways: {result['width']} px wide at {WIDTH} px"
    assert not result["wide_tables"], f"tables wider than the page at {WIDTH} px: {result['wide_tables']}"


@pytest.mark.slow  # builds a report and renders it in Chromium
def test_constructed_report_renders_cleanly(tmp_path: Path) -> None:
    html = _constructed_report(tmp_path)
    screenshot = html.parent / "screenshot.png"
    result = render(html, screenshot, tmp_path / "profile")
    _check(result)
    assert len(result["images"]) == 8  # forest, per-subject, metrics, heatmap, learning curves, three panels
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result["height"] > 2000


def test_broken_image_and_console_error_are_caught(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img alt="missing" src="missing.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    result = render(page, tmp_path / "bad.png", tmp_path / "profile")
    assert any("boom" in e for e in result["errors"])
    with pytest.raises(AssertionError):
        _check(result)


@pytest.mark.workflow
def test_cross_validated_tiny_study_report_renders_cleanly(folds_study, tmp_path: Path) -> None:
    """The report the test run itself builds (conftest.folds_study): every table fits the page."""
    html = folds_study.work / "results" / "report" / "index.html"
    result = render(html, tmp_path / "screenshot.png", tmp_path / "profile")
    _check(result)
    assert len(result["images"]) >= 8  # forest, per-subject, metrics, heatmap, curves, two panels, budget


def test_study_report_renders_cleanly(tmp_path: Path) -> None:
    html = ROOT / "results" / "report" / "index.html"
    if not html.is_file():
        pytest.skip(f"{html} not built yet: run the study first (snakemake)")
    _check(render(html, html.parent / "screenshot.png", tmp_path / "profile"))
