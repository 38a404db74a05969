"""The report's figures and page as a reader sees them: round ticks, axis titles with units, the y
range inside the metric's range, UAR in %, no signed zero in a table, the inline script allowed by
its hash only, and a byte-identical page for identical results."""
from __future__ import annotations

import base64
import hashlib
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from report_data import fill_store, poisoned_names

from ser_bench.db import Store
from ser_bench.report.build import build_report

# ----------------------------------------------------------------------------- helpers


def svgs(html: str) -> list[ET.Element]:
    """Every inline <svg> of the page, parsed (matplotlib's output is well-formed XML)."""
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def texts(svg: ET.Element, id_part: str) -> list[str]:
    """Texts inside the groups whose id contains ``id_part`` (ids are ``<figure prefix>-<name>``)."""
    return ["".join(t.itertext()).strip() for g in svg.iter("g") if id_part in g.get("id", "")
            for t in g.iter("text")]


def number(label: str) -> float:
    return float(label.replace("\u2212", "-"))


def assert_round_ticks(labels: list[str], where: str) -> None:
    """Evenly spaced multiples of 1, 2, 2.5 or 5 x 10^k (what a reader expects on an axis)."""
    vals = [number(s) for s in labels]
    assert len(vals) >= 2, (where, labels)
    step = vals[1] - vals[0]
    assert step > 0 and all(math.isclose(b - a, step, rel_tol=1e-6) for a, b in zip(vals, vals[1:])), (where, labels)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5, 10)), (where, labels)
    assert all(math.isclose(v / step, round(v / step), abs_tol=1e-6) for v in vals), (where, labels)


def aria(svg: ET.Element) -> str:
    return svg.get("aria-label", "")


@pytest.fixture
def page(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    fill_store(store, poisoned_names(9))
    return build_report(store, tmp_path / "rep").read_text()


# ----------------------------------------------------------------------------- the figures in the report


def test_every_figure_has_axis_titles_and_round_ticks(page):
    figures = svgs(page)
    kinds = {f.get("class") for f in figures}
    assert {"chart", "chart qchart", "chart scatter"} <= kinds, kinds
    for f in figures:
        where = aria(f)
        assert texts(f, "-ylabel") and all(texts(f, "-ylabel")), f"no y-axis title: {where}"
        assert texts(f, "-xlabel") and all(texts(f, "-xlabel")), f"no x-axis title: {where}"
        assert_round_ticks(texts(f, "-ytick_"), where)
        assert_round_ticks(texts(f, "-xtick_"), where)
    board = [f for f in figures if f.get("class") == "chart"]
    assert board
    for f in board:  # the leaderboard: UAR in % on the y axis, SNR in dB on the x axis
        assert texts(f, "-ylabel") == ["UAR (%)"] and texts(f, "-xlabel") == ["SNR (dB)"]
        assert 0 <= float(f.get("data-ymin")) < float(f.get("data-ymax")) <= 100
        assert max(number(t) for t in texts(f, "-ytick_")) <= 100
        assert f.findall(".//g[@class='series']") and f.findall(".//g[@class='ref']")  # lines + clean reference


def test_leaderboard_figure_draws_the_bootstrap_ci_bands(page):
    board = next(f for f in svgs(page) if f.get("class") == "chart")
    # a CI band is a filled polygon (fill_between) per series with CIs: noisy + 2 enhancers; clean: a span
    bands = [g.get("id").split("-band-")[1] for g in board.iter("g") if "-band-" in g.get("id", "")]
    assert sorted(bands) == ["ref-1", "series-1", "series-2", "series-3"]
    tips = ["".join(t.itertext()) for g in board.findall(".//g[@class='series']") for t in g.findall("title")]
    assert any(re.search(r"\d+ dB: [\d.]+ % \[[\d.]+, [\d.]+\]", t) for t in tips), tips  # value [CI] on hover


def test_quality_section_shows_uar_in_percent(page):
    ser = [f for f in svgs(page) if f.get("class") == "chart qchart" and aria(f).startswith("UAR")]
    assert ser, [aria(f) for f in svgs(page)]
    for f in ser:
        assert texts(f, "-ylabel") == ["UAR (%)"]
        assert max(number(t) for t in texts(f, "-ytick_")) > 1  # percent, not a fraction
    # units sit on the axis they belong to: the x-axis title is the SNR, never "SNR (dB) · st"
    for f in svgs(page):
        assert all("·" not in t for t in texts(f, "-xlabel")), texts(f, "-xlabel")


def _quality_store(tmp_path, f0_rmse: list[float], si_sdr_i: float, ccc: float) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'q.db'}")
    run = store.start_run(config_json="{}", config_hash="q", protocol="clean", name="q", code_version="t", plugins={},
                          env={}, seed=0, snr_definition="s", n_cells=0)
    store.record_cell(run, "c", dict(dataset="rec", ser_model="m", enhancer="none", noise="-", protocol="clean",
                                     train_condition="clean", train_snr=None, test_condition="clean", test_snr=None,
                                     fold="f"), status="done", metrics={"ccc": ccc})
    for i, (snr, f0) in enumerate(zip((0.0, 10.0, 20.0), f0_rmse)):
        for enh in ("none", "wiener"):
            vals = {"pesq": 1.5 + snr / 20, "stoi": 0.7, "si_sdr": snr, "f0_rmse": f0}
            if enh != "none":
                vals["si_sdr_i"] = si_sdr_i
            detail = {"metrics": list(vals), "values": [[f"u{k}", *[v + 0.001 * k for v in vals.values()]]
                                                        for k in range(4)]}
            store.record_cell(run, f"q{i}{enh}", dict(dataset="rec", ser_model="-", protocol="quality", enhancer=enh,
                                                      noise="white", train_condition="-", train_snr=None,
                                                      test_condition="noisy" if enh == "none" else "enhanced",
                                                      test_snr=snr, fold="all"),
                              status="done", kind="quality", metrics={**vals, "n_utts": 4.0, "failures": 0.0},
                              predictions=detail)
    store.finish_run(run, "done", wall_s=1.0)
    return store


def test_rmse_axis_never_below_zero(tmp_path):
    html = build_report(_quality_store(tmp_path, [2.0, 0.5, 0.0], 1.0, 0.5), tmp_path / "rep").read_text()
    rmse = [f for f in svgs(html) if aria(f).startswith("F0 RMSE")]
    assert len(rmse) == 1
    ticks = [number(t) for t in texts(rmse[0], "-ytick_")]
    assert ticks and min(ticks) >= 0, ticks
    assert float(rmse[0].get("data-ymin")) >= 0
    assert texts(rmse[0], "-ylabel") == ["F0 RMSE (semitones)"]


class _CellText(HTMLParser):
    def __init__(self):
        super().__init__()
        self.depth, self.cells, self._buf = 0, [], []

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self.depth += 1
            self._buf = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.depth:
            self.depth -= 1
            self.cells.append("".join(self._buf))

    def handle_data(self, data):
        if self.depth:
            self._buf.append(data)


def test_no_signed_zero_in_any_table(tmp_path):
    # -0.003 dB prints as "-0.00" with "%.2f"; a CCC of -0.0004 as "-0.0" (x100, "%.1f")
    html = build_report(_quality_store(tmp_path, [2.0, 0.5, 0.2], -0.003, -0.0004), tmp_path / "rep").read_text()
    p = _CellText()
    p.feed(html)
    assert len(p.cells) > 20
    signed_zero = re.compile(r"(?<![\w.])[-+\u2212]0(?:\.0+)?(?![\d.])")
    bad = [c for c in p.cells if signed_zero.search(c)]
    assert bad == []
    assert any(re.fullmatch(r"0\.00", c.strip()) for c in p.cells)  # the value is shown, as 0.00


def test_no_signed_zero_formatting():
    from ser_bench.report.fmt import no_signed_zero, num

    assert [num(v, s) for v, s in [(-0.003, ".2f"), (-0.04, "+.1f"), (0.0, "+.1f"), (-0.0, "g"), (-1e-9, ".3g")]] == \
        ["0.00", "0.0", "0.0", "0", "-1e-09"]
    assert [num(v, s) for v, s in [(-0.006, ".2f"), (0.05, "+.1f"), (-3.0, "+.0f")]] == ["-0.01", "+0.1", "-3"]
    assert no_signed_zero("-0.0%") == "0.0%" and no_signed_zero("-0.01") == "-0.01" and no_signed_zero(3) == 3


# ----------------------------------------------------------------------------- the page


def test_csp_allows_only_the_pages_own_script_by_hash(page):
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
    assert directives["default-src"] == ["'none'"]
    script_src = directives["script-src"]
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src and "'self'" not in script_src
    scripts = re.findall(r"<script(?![^>]*application/json)[^>]*>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 1 and "addEventListener" in scripts[0]
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert script_src == [f"'sha256-{digest}'"]


def test_identical_results_give_a_byte_identical_report(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    fill_store(store, poisoned_names(9))
    a = build_report(store, tmp_path / "a").read_bytes()
    b = build_report(store, tmp_path / "b").read_bytes()
    assert a == b
    assert b"1970-01-02 00:00 UTC" in a
    ids = re.findall(rb'\bid="([^"]+)"', a)
    assert len(ids) > 50 and len(ids) == len(set(ids))  # several figures, no id shared between them


def test_bad_source_date_epoch_is_a_clear_error(tmp_path, monkeypatch):
    from ser_bench.errors import BenchError

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BenchError, match="SOURCE_DATE_EPOCH='yesterday'"):
        build_report(Store(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path / "rep")


# ----------------------------------------------------------------------------- the figures API


def test_snr_figure_paper_style_reference_and_clamp():
    from ser_bench.report.figures import Reference, Series, snr_figure

    snrs = [-5, 0, 5, 10, 15, 20]
    svg = snr_figure([Series("ours", snrs, [0.5, 0.6, 0.7, 0.8, 0.9, 0.98], [0.45, 0.55, 0.65, 0.75, 0.85, 0.93],
                             [0.55, 0.65, 0.75, 0.85, 0.95, 1.0]),
                      Series("paper", snrs, [0.52, 0.61, None, 0.79, 0.88, 0.97], style="dashed", color="#1f77b4")],
                     metric="uar", title="Table 5", references=[Reference("clean (paper)", 0.99, style="dotted")])
    f = ET.fromstring(svg)
    assert float(f.get("data-ymax")) <= 100 and texts(f, "-ylabel") == ["UAR (%)"]
    series = f.findall(".//g[@class='series']")
    assert len(series) == 2
    assert "stroke-dasharray" not in ET.tostring(series[0]).decode()
    assert "stroke-dasharray" in ET.tostring(series[1]).decode()  # the paper's values: dashed
    ref = f.findall(".//g[@class='ref']")
    assert len(ref) == 1 and "clean (paper): 99" in "".join(ref[0].find("title").itertext())
    assert_round_ticks(texts(f, "-ytick_"), "uar")
    assert [number(t) for t in texts(f, "-xtick_")] == snrs  # the SNRs themselves, like the paper


@pytest.mark.parametrize("metric,values,lo,hi", [
    ("ccc", [0.2, 0.6, 0.97], None, 1.0),
    ("f0_rmse", [0.3, 0.01, 0.0], 0.0, None),
    ("uar", [0.18, 0.39, 0.61, 0.82, 1.0], 0.0, 100.0),
])
def test_snr_figure_keeps_the_y_range_inside_the_metric(metric, values, lo, hi):
    from ser_bench.report.figures import Series, snr_figure

    xs = list(range(len(values)))
    f = ET.fromstring(snr_figure([Series("s", xs, values, [max(0.0, v - 0.05) for v in values],
                                         [min(1.0, v + 0.05) for v in values])], metric=metric))
    ymin, ymax = float(f.get("data-ymin")), float(f.get("data-ymax"))
    ticks = [number(t) for t in texts(f, "-ytick_")]
    assert_round_ticks(texts(f, "-ytick_"), metric)
    if lo is not None:
        assert ymin >= lo and min(ticks) >= lo
    if hi is not None:
        assert ymax <= hi and max(ticks) <= hi


def test_figures_escape_text_and_are_deterministic():
    from ser_bench.report.figures import Point, Series, scatter_figure, snr_figure

    evil = '<script>alert(1)</script> & $x^2$ "q"'
    a = snr_figure([Series(evil, [0, 10], [0.3, 0.4])], metric="uar", title=evil)
    assert a == snr_figure([Series(evil, [0, 10], [0.3, 0.4])], metric="uar", title=evil)
    assert "<script>" not in a and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; $x^2$" in a  # no mathtext either
    for leak in ("http://", "https://", "<?xml", "<!DOCTYPE", "xlink:", "Date"):
        assert leak not in a, leak
    b = snr_figure([Series("other", [0, 10], [0.3, 0.4])], metric="uar")
    pa = re.search(r'id="(f[0-9a-f]+)-', a).group(1)
    pb = re.search(r'id="(f[0-9a-f]+)-', b).group(1)
    assert pa != pb  # two figures in one page never share an id
    sc = scatter_figure([Point(1, 2, evil, "tip <1>"), Point(2, 3, "b"), Point(3, 1, evil)],
                        xlabel="Δ PESQ", ylabel="Δ UAR (% points)")
    f = ET.fromstring(sc)
    assert len(f.findall(".//g[@class='pt']")) == 3 and "tip <1>" in ET.tostring(f, encoding="unicode").replace(
        "&lt;", "<").replace("&gt;", ">")
    assert snr_figure([Series("empty", [0, 10], [None, float("nan")])], metric="uar") == ""
    assert scatter_figure([Point(1, 2)], xlabel="x", ylabel="y") == ""
