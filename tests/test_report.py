import re
from html.parser import HTMLParser

import numpy as np

from ser_bench.db import Store
from ser_bench.report.build import build_report
from ser_bench.runner import run


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.values, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-value" in a:
            self.values.append(float(a["data-value"]))
        if tag == "script" and a.get("src"):
            self.scripts += 1


def test_report_numbers_equal_db(registry, tiny_config, tmp_path):
    store = Store()
    run(tiny_config("mismatched"), store=store, registry=registry, progress=False)
    html = build_report(store, tmp_path / "rep").read_text()
    p = Cells()
    p.feed(html)
    df = store.results_frame()
    uar = df[df.metric == "uar"]
    means = uar.groupby(["ser_model", "enhancer", "test_condition", "test_snr"], dropna=False).value.mean()
    # every DB cell group appears in the HTML with the same value; every HTML value is a DB value
    html_vals = np.array(p.values)
    for v in means.to_numpy():
        assert np.isclose(html_vals, v, rtol=0, atol=1e-9).any()
    for v in html_vals:
        assert np.isclose(means.to_numpy(), v, rtol=0, atol=1e-9).any()
    assert p.scripts == 0 and "http://" not in html and "https://" not in html  # offline, no CDN
    assert "<svg" in html and "tones · mismatched · noise white-test" in html
    run_row = store.runs_frame().iloc[0]
    assert run_row.config_hash in html and run_row.code_version in html  # the footer traces numbers to their run


def test_report_escapes_text(registry, tiny_config, tmp_path):
    store = Store()
    rid = store.start_run(config_json="{}", config_hash="x", protocol="clean", name="<script>alert(1)</script>",
                          code_version="t", plugins={}, env={}, seed=0, snr_definition="s", n_cells=1)
    store.record_cell(rid, "k", dict(dataset="<img src=x onerror=alert(1)>", ser_model="m", enhancer="none",
                                     noise="-", protocol="clean", train_condition="clean", train_snr=None,
                                     test_condition="clean", test_snr=None, fold="f"), status="done",
                      metrics={"uar": 0.5})
    html = build_report(store, tmp_path / "rep").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
