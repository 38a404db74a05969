"""The report in a real headless browser (Debian's chromium + chromedriver, driven over the
WebDriver HTTP protocol with the standard library): it loads with no network request, its charts
render, clicking a header sorts a table, and dataset-provided text cannot inject script.

Skipped, with the reason, where chromium or chromedriver is missing (``.ci/run`` installs both:
``apt-get install chromium chromium-driver``).
"""
from __future__ import annotations

import base64
import http.server
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
from report_data import fill_store, poisoned_names

CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", "/usr/lib/chromium/chromium")
                 if p and Path(p).exists()), None)
DRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
               if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs a headless browser: Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; .ci/run installs them)",
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--window-size=1400,1000"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


# ----------------------------------------------------------------------------- a poisoned registry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Trap:
    """A local HTTP server counting every request: nothing in the report may reach it."""

    def __init__(self) -> None:
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------- WebDriver over HTTP


class Browser:
    """Just enough of the W3C WebDriver protocol (chromedriver) for these checks."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.log = open(tmp / "chromedriver.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen([DRIVER, f"--port={self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                if self._call("GET", "/status")["value"].get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        else:
            self.close()
            pytest.skip("chromedriver did not start within 20 s")
        caps = {"browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={tmp / 'profile'}"]},
                "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"}}
        try:
            self.sid = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["value"]["sessionId"]
        except urllib.error.HTTPError as exc:  # e.g. chromium and chromedriver versions differ
            self.close()
            pytest.skip(f"chromedriver could not start chromium: {exc.read()[:300]!r}")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read() or b"{}")

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.sid}{path}", body)["value"]

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def js(self, script: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, element: str) -> None:
        self.cmd("POST", f"/element/{element}/click", {})

    def logs(self, kind: str) -> list[dict]:
        for path in ("/se/log", "/log"):
            try:
                return self.cmd("POST", path, {"type": kind})
            except urllib.error.HTTPError:
                continue
        raise AssertionError(f"chromedriver returned no {kind} log")

    def element_png(self, element: str) -> bytes:
        return base64.b64decode(self.cmd("GET", f"/element/{element}/screenshot"))

    def close(self) -> None:
        try:
            if getattr(self, "sid", None):
                self._call("DELETE", f"/session/{self.sid}")
        except Exception:  # noqa: BLE001
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def png_info(png: bytes) -> tuple[int, int, int]:
    """(width, height, number of distinct byte values in the pixel data) of a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos : pos + 8])
        data = png[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", data[:8])
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    return w, h, len(set(zlib.decompress(idat)))


# ----------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from ser_bench.db import Store
    from ser_bench.report.build import build_report

    tmp = tmp_path_factory.mktemp("browser")
    trap = Trap()
    names = poisoned_names(trap.port)
    store = Store(f"sqlite:///{tmp / 'registry.db'}")
    fill_store(store, names)
    html = build_report(store, tmp / "report")
    browser = Browser(tmp)
    try:
        browser.logs("performance")  # drain what the blank start-up tab loaded (chrome:// pages)
        browser.logs("browser")
        browser.get(html.resolve().as_uri())
        for _ in range(100):
            if browser.js("return document.readyState") == "complete":
                break
            time.sleep(0.1)
        time.sleep(0.5)  # let anything that would fire (onerror, onload, fetches) fire
        yield {"browser": browser, "trap": trap, "names": names, "html": html}
    finally:
        browser.close()
        trap.close()


def test_no_network_request(page):
    b, trap = page["browser"], page["trap"]
    page_uri = page["html"].resolve().as_uri()
    sent = [json.loads(e["message"])["message"] for e in b.logs("performance")]
    reqs = [(m["params"]["request"]["url"], m["params"].get("documentURL", ""))
            for m in sent if m.get("method") == "Network.requestWillBeSent"]
    mine = [u for u, doc in reqs if doc == page_uri]
    assert page_uri in mine, "the performance log did not record the page itself: logging is broken"
    assert all(u.startswith(("file://", "data:")) for u in mine), mine  # the page loads nothing else
    # and nothing at all (the browser's own start-up tab included) went to the network
    assert [u for u, _ in reqs if u.startswith(("http:", "https:", "ws:", "wss:", "ftp:"))] == []
    assert trap.hits == []
    # the page names no external resource anywhere
    assert b.js("return document.querySelectorAll('[src], link[href], image, iframe, object, embed').length") == 0
    csp = b.js("return document.querySelector('meta[http-equiv=Content-Security-Policy]').content")
    assert "default-src 'none'" in csp
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src")).split()[1:]
    assert len(script_src) == 1 and script_src[0].startswith("'sha256-")  # only the page's own script, by hash


def test_dataset_text_is_shown_as_text_not_run(page):
    b, names = page["browser"], page["names"]
    assert b.js("return document.title") == "ser-bench leaderboard"
    text = b.js("return document.body.innerText")
    for key in ("dataset", "enhancer", "ser_model"):
        assert names[key] in text, key  # visible, verbatim, as text
    # only the page's own two scripts exist (the JSON data block and the sort script)
    assert b.js("return Array.from(document.scripts).map(s => s.type || 'js')") == ["application/json", "js"]
    assert b.js("return document.querySelectorAll('img, iframe, svg image').length") == 0
    data = b.js("return JSON.parse(document.getElementById('bench-data').textContent)")
    assert {names["ser_model"], names["dataset"]} <= {r["ser_model"] for r in data} | {r["dataset"] for r in data}
    severe = [e for e in b.logs("browser") if e.get("level") == "SEVERE"]
    assert severe == []  # no script error, no CSP violation report


def test_charts_render(page):
    b = page["browser"]
    sizes = b.js("return Array.from(document.querySelectorAll('svg.chart')).map(s => "
                 "{const r = s.getBoundingClientRect(); return [s.getAttribute('class'), r.width, r.height];})")
    kinds = {c for c, _, _ in sizes}
    assert {"chart", "chart qchart", "chart scatter"} <= kinds, kinds  # leaderboard, quality curves, trade-off
    assert all(w > 100 and h > 100 for _, w, h in sizes), sizes
    assert b.js("return document.querySelectorAll('svg.qchart g.series path').length") >= 3
    assert b.js("return document.querySelectorAll('svg.scatter g.pt').length") >= 4
    for css in ("svg.chart", "svg.qchart", "svg.scatter"):
        w, h, distinct = png_info(b.element_png(b.find(css)))
        assert w > 100 and h > 100 and distinct > 10, (css, w, h, distinct)  # drawn, not a blank box


AXES_JS = """
return Array.from(document.querySelectorAll('svg.chart')).map(function (s) {
  function texts(part) {
    return Array.from(s.querySelectorAll('g[id*="' + part + '"] text')).map(function (t) { return t.textContent.trim(); });
  }
  return {cls: s.getAttribute('class'), label: s.getAttribute('aria-label'), ylabel: texts('-ylabel'),
          xlabel: texts('-xlabel'), yticks: texts('-ytick_'), xticks: texts('-xtick_')};
});
"""


def _round(labels: list[str]) -> bool:
    import math

    v = [float(t.replace("\u2212", "-")) for t in labels]
    if len(v) < 2:
        return False
    step = v[1] - v[0]
    mant = step / 10 ** math.floor(math.log10(step)) if step > 0 else 0
    return (all(math.isclose(b - a, step, rel_tol=1e-6) for a, b in zip(v, v[1:]))
            and any(math.isclose(mant, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5, 10))
            and all(math.isclose(x / step, round(x / step), abs_tol=1e-6) for x in v))


def test_axis_titles_and_round_ticks(page):
    """Read the figures' <text> elements as the browser has them: every figure has both axis
    titles, and its tick labels are round numbers (multiples of 1, 2, 2.5 or 5 x 10^k)."""
    figs = page["browser"].js(AXES_JS)
    assert len(figs) >= 10
    for f in figs:
        assert f["ylabel"] and all(f["ylabel"]) and f["xlabel"] and all(f["xlabel"]), f
        assert _round(f["yticks"]) and _round(f["xticks"]), f
    board = [f for f in figs if f["cls"] == "chart"]
    assert board and all(f["ylabel"] == ["UAR (%)"] and f["xlabel"] == ["SNR (dB)"] for f in board), board
    assert all(float(t.replace("\u2212", "-")) <= 100 for f in board for t in f["yticks"])


def test_no_text_is_clipped(page):
    """Every text of every figure (tick labels, titles, legend) lies inside its figure's box."""
    out = page["browser"].js("""
      var bad = [], n = 0;
      document.querySelectorAll('svg.chart').forEach(function (s) {
        var box = s.getBoundingClientRect();
        s.querySelectorAll('text').forEach(function (t) {
          var r = t.getBoundingClientRect(); n++;
          if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
            bad.push([s.getAttribute('aria-label'), t.textContent, r.left, r.right, box.left, box.right]);
        });
      });
      return [n, bad];""")
    n, bad = out
    assert n > 100 and bad == [], bad


def test_clicking_a_header_sorts_the_table(page):
    b = page["browser"]
    col = "return Array.from(document.querySelector('table.quality-table').tBodies[0].rows).map(r => parseFloat(r.cells[1].dataset.value))"
    before = b.js(col)
    assert before != sorted(before)  # rows come grouped by enhancer: SNRs repeat
    header = b.find("table.quality-table thead th:nth-child(2)")
    b.click(header)
    assert b.js(col) == sorted(before)
    b.click(header)
    assert b.js(col) == sorted(before, reverse=True)
    # a leaderboard column sorts numerically too (values carry data-value)
    lb = "return Array.from(document.querySelector('section.board table').tBodies[0].rows).map(r => parseFloat(r.cells[3].dataset.value))"
    b.click(b.find("section.board table thead th:nth-child(4)"))
    vals = b.js(lb)
    assert vals == sorted(vals)
