"""``bench report``: results DB -> pandas -> Jinja2 -> one self-contained HTML file.

Per dataset x protocol x noise source: a leaderboard shaped like the paper's tables (rows SER
model x enhancer; columns clean, then noisy / enhanced per SNR; mean +- std over folds), an
inline SVG chart of the metric against SNR, and a footer tracing every number to its runs.
Everything is escaped (Jinja2 autoescape); data is embedded as JSON with ``<`` escaped.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .. import __version__
from ..db import Store
from ..metrics import HIGHER_IS_BETTER

MAIN_METRIC = {"classification": "uar", "regression": "ccc"}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


@dataclass
class Value:
    mean: float
    std: float
    n_folds: int
    runs: list[int]
    cell_ids: list[int] = field(default_factory=list)
    #: filled by harness.report.ci.annotate: bootstrap CI over utterances, and on enhanced
    #: columns the paired enhanced - noisy difference with its CI and significance
    ci: tuple[float, float] | None = None
    ci_stat: str = ""
    n_utts: int = 0  # test utterances the interval resamples (all folds)
    delta: dict[str, float] | None = None
    sig: str = ""

    def text(self) -> str:
        return f"{100 * self.mean:.1f}" if not np.isnan(self.mean) else "–"


@dataclass
class Table:
    title: str
    metric: str
    columns: list[tuple[str, str]]  # (group label, sub label)
    rows: list[dict[str, Any]]  # {"label": [...], "cells": [Value|None], "repeat", "best": [bool]}
    row_header: list[str]
    chart: str = ""
    notes: list[str] = field(default_factory=list)
    rank: bool = True  # mark the best value per column (see :func:`mark_best`)


def _agg(df: pd.DataFrame) -> Value | None:
    if df.empty:
        return None
    v = df["value"].to_numpy(dtype=float)
    return Value(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v), sorted(set(df["run_id"])),
                 cell_ids=sorted(int(c) for c in df["cell_id"]) if "cell_id" in df else [])


def _metric_for(df: pd.DataFrame) -> str:
    ms = set(df["metric"])
    for m in ("uar", "ccc"):
        if m in ms:
            return m
    return sorted(ms)[0]


def leaderboard(df: pd.DataFrame, dataset: str, protocol: str, noise: str) -> Table:
    """The paper-shaped table for one dataset x protocol x noise source (rows model x enhancer)."""
    metric = _metric_for(df)
    d = df[(df.metric == metric) & (df.dataset == dataset) & (df.protocol == protocol)]
    clean = d[(d.train_condition == "clean") & (d.test_condition == "clean")]
    noisy = d[d.noise == noise]
    snrs = sorted({s for s in noisy.test_snr.dropna()})
    enhancers = sorted(set(noisy.enhancer) - {"none"})
    columns = [("clean", "")] + [(f"{s:g} dB", c) for s in snrs for c in (["noisy"] + (["enhanced"] if enhancers else []))]
    rows = []
    for model in sorted(set(d.ser_model)):
        cm = clean[clean.ser_model == model]
        for enh in ["none"] + enhancers:
            cells: list[Value | None] = [_agg(cm)]
            for s in snrs:
                nz = noisy[(noisy.ser_model == model) & (noisy.test_snr == s) & (noisy.test_condition == "noisy")
                           & (noisy.enhancer == "none")]
                if protocol == "multi-snr":
                    nz = nz[nz.train_snr == s]
                cells.append(_agg(nz))
                if enhancers:
                    en = noisy[(noisy.ser_model == model) & (noisy.test_snr == s) & (noisy.test_condition == "enhanced")
                               & (noisy.enhancer == enh)]
                    if protocol == "multi-snr":
                        en = en[en.train_snr == s]
                    cells.append(_agg(en) if enh != "none" else None)
            # clean and noisy values belong to the model, not the enhancer: repeated on its other rows
            rows.append({"label": [model, enh], "cells": cells,
                         "repeat": [enh != "none" and sub != "enhanced" for _, sub in columns]})
    title = f"{dataset} · {protocol} · noise {noise}"
    t = Table(title=title, metric=metric, columns=columns, rows=rows, row_header=["SER model", "enhancer"])
    t.chart = chart(d, noise, protocol, metric, snrs, enhancers)
    return t


def mark_best(t: Table) -> None:
    """Set each row's ``best`` flags: per column, the best value among the rows that own it (a
    clean / noisy value repeated on an enhancer's row does not compete again), unless that value
    is significantly worse than noisy (▼). Needs :func:`harness.report.ci.annotate` to have run."""
    higher = HIGHER_IS_BETTER.get(t.metric, True)
    for r in t.rows:
        r["best"] = [False] * len(t.columns)
        r.setdefault("repeat", [False] * len(t.columns))
    if not t.rank:
        return
    for j in range(len(t.columns)):
        own = [r for r in t.rows if r["cells"][j] is not None and not r["repeat"][j]
               and not np.isnan(r["cells"][j].mean)]
        if len(own) < 2:
            continue
        best = (max if higher else min)(r["cells"][j].mean for r in own)
        for r in own:
            r["best"][j] = r["cells"][j].mean == best and r["cells"][j].sig != "worse"


def multi_snr_matrices(df: pd.DataFrame, dataset: str, noise: str) -> list[Table]:
    """multi-snr: one train-SNR x test-SNR matrix per (model, condition)."""
    metric = _metric_for(df)
    d = df[(df.metric == metric) & (df.dataset == dataset) & (df.protocol == "multi-snr") & (df.noise == noise)]
    out = []
    for model in sorted(set(d.ser_model)):
        for (cond, enh), g in d[d.ser_model == model].groupby(["test_condition", "enhancer"]):
            tr = sorted(set(g.train_snr.dropna()))
            te = sorted(set(g.test_snr.dropna()))
            rows = [{"label": [f"train {a:g} dB"], "cells": [_agg(g[(g.train_snr == a) & (g.test_snr == b)]) for b in te]}
                    for a in tr]
            label = cond if cond == "noisy" else f"enhanced ({enh})"
            out.append(Table(title=f"{dataset} · multi-snr · {model} · {label} · noise {noise}", metric=metric,
                             columns=[(f"test {b:g} dB", "") for b in te], rows=rows, row_header=["train SNR"],
                             rank=False))
    return out


def chart(d: pd.DataFrame, noise: str, protocol: str, metric: str, snrs: list[float], enhancers: list[str]) -> str:
    """Inline SVG: metric (y) against SNR (x): clean (dashed), noisy, enhanced per enhancer; per SER model."""
    if not snrs:
        return ""
    W, H, L, R, T, B = 560, 260, 50, 150, 15, 35
    series = []
    for mi, model in enumerate(sorted(set(d.ser_model))):
        dm = d[d.ser_model == model]
        if protocol == "multi-snr":
            dm = dm[(dm.train_snr == dm.test_snr) | (dm.train_condition == "clean")]
        clean = dm[(dm.train_condition == "clean") & (dm.test_condition == "clean")]["value"].mean()
        pts = {"noisy": [], **{e: [] for e in enhancers}}
        for s in snrs:
            g = dm[(dm.noise == noise) & (dm.test_snr == s)]
            pts["noisy"].append(g[g.test_condition == "noisy"]["value"].mean())
            for e in enhancers:
                pts[e].append(g[(g.test_condition == "enhanced") & (g.enhancer == e)]["value"].mean())
        suffix = f" · {model}" if d.ser_model.nunique() > 1 else ""
        if not np.isnan(clean):
            series.append((f"clean{suffix}", [clean] * len(snrs), "#555", "6,4"))
        series.append((f"noisy{suffix}", pts["noisy"], COLORS[(2 * mi) % len(COLORS)], ""))
        for k, e in enumerate(enhancers):
            series.append((f"{e}{suffix}", pts[e], COLORS[(2 * mi + 1 + k) % len(COLORS)], "2,2" if mi else ""))
    vals = [v for _, ys, _, _ in series for v in ys if not np.isnan(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    pad = max(0.02, (hi - lo) * 0.1)
    lo, hi = lo - pad, hi + pad
    xs = lambda i: L + (W - L - R) * (i / max(1, len(snrs) - 1))  # noqa: E731
    ys = lambda v: T + (H - T - B) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
             f'aria-label="{metric} against SNR">',
             f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#999"/>',
             f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#999"/>']
    for i, s in enumerate(snrs):
        parts.append(f'<text x="{xs(i):.1f}" y="{H - B + 15}" font-size="11" text-anchor="middle">{s:g}</text>')
    parts.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - 4}" font-size="11" text-anchor="middle">SNR (dB)</text>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<text x="{L - 6}" y="{ys(v) + 4:.1f}" font-size="10" text-anchor="end">{100 * v:.0f}</text>')
    for n, (name, yv, color, dash) in enumerate(series):
        pts = [(xs(i), ys(v)) for i, v in enumerate(yv) if not np.isnan(v)]
        if not pts:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        da = f' stroke-dasharray="{dash}"' if dash else ""
        from html import escape

        parts.append(f'<polyline class="series" data-series="{escape(name)}" points="{path}" fill="none" '
                     f'stroke="{color}" stroke-width="2"{da}/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
        ly = T + 14 * n + 5
        parts.append(f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 30}" y2="{ly}" stroke="{color}" stroke-width="2"{da}/>')
        parts.append(f'<text x="{W - R + 34}" y="{ly + 4}" font-size="10">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def collect(store: Store) -> dict[str, Any]:
    """Everything the report shows, as plain data (also embedded in the page as JSON)."""
    res = store.results_frame()
    res = res[res.kind == "ser"] if not res.empty else res
    runs = store.runs_frame()
    tables: list[Table] = []
    if not res.empty:
        for (ds, proto), g in res.groupby(["dataset", "protocol"], sort=True):
            noises = sorted(set(g.noise) - {"-"}) or ["-"]
            for noise in noises:
                tables.append(leaderboard(res, ds, proto, noise))
                if proto == "multi-snr":
                    tables.extend(multi_snr_matrices(res, ds, noise))
        from .ci import annotate

        annotate(tables, store)  # bootstrap CIs over utterances; enhanced vs noisy significance
        for t in tables:
            mark_best(t)
    return {"tables": tables, "runs": runs, "results": res}


def build_report(store: Store, out: Path) -> Path:
    """Write ``out/index.html`` atomically; nothing else in ``out`` is touched."""
    data = collect(store)
    env = Environment(loader=PackageLoader("harness", "report/templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined)
    # cells by their content key and in coordinate order, not by row id: the same results give
    # the same page whichever order (or registry) they were stored in
    cols = ["dataset", "protocol", "ser_model", "enhancer", "noise", "train_condition", "train_snr", "test_condition",
            "test_snr", "fold", "metric"]
    payload = (data["results"].sort_values(cols + ["cell_key"], na_position="first", kind="stable")
               [["cell_key", "run_id", *cols, "value"]].to_dict(orient="records")) if not data["results"].empty else []
    runs = data["runs"]
    html = env.get_template("index.html").render(
        tables=data["tables"],
        run_notes=run_notes(runs),
        runs=runs.to_dict(orient="records") if not runs.empty else [],
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        db=store.url,
        snr_definitions=sorted(set(runs.snr_definition)) if not runs.empty else [],
        data_json=json.dumps([{k: None if isinstance(v, float) and v != v else v for k, v in r.items()} for r in payload],
                             default=str, allow_nan=False)  # NaN is not JSON: browsers reject the whole block
        .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"),
        extra_sections=_extra_sections(store),
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # only index.html is ours: write it beside whatever the folder holds (never delete a thing),
    # via a temporary file in the same folder so a reader never sees half a page
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".html.tmp", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(tmp, out / "index.html")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out / "index.html"


def run_notes(runs: pd.DataFrame) -> list[str]:
    """Warnings about runs whose results are incomplete (interrupted, still running or crashed)."""
    notes = []
    for r in runs.itertuples() if not runs.empty else ():
        if r.status == "interrupted":
            notes.append(f"Run {r.id} ({r.protocol}) was interrupted ({r.error or 'stopped'}) after {r.n_done} of "
                         f"{r.n_cells} cells: its tables are incomplete; re-run the same command to resume it.")
        elif r.status == "running":
            notes.append(f"Run {r.id} ({r.protocol}) is still running, or its process was killed (SIGKILL, a "
                         "crash): its tables are incomplete; re-run the same command to resume it.")
    return notes


def _extra_sections(store: Store) -> list[dict[str, str]]:
    """Sections contributed by report modules (paper view, quality...): [{"title", "html"}].

    Each module exposes ``section(store) -> dict | None`` returning already-escaped HTML
    (built with Jinja2 autoescape or markupsafe.escape).
    """
    import importlib

    from markupsafe import Markup

    out = []
    for mod in EXTRA_SECTION_MODULES:
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        sec = m.section(store)
        if sec:
            out.append({"title": sec["title"], "html": Markup(sec["html"])})
    return out


#: Report modules that add sections; each defines ``section(store)``.
EXTRA_SECTION_MODULES: list[str] = ["harness.report.paper", "harness.report.quality"]
