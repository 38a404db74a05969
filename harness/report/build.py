"""``bench report``: results DB -> pandas -> Jinja2 -> one self-contained HTML file.

Per dataset x protocol x noise source: a leaderboard shaped like the paper's tables (rows SER
model x enhancer; columns clean, then noisy / enhanced per SNR; mean +- std over folds), a
figure of the metric against SNR with CI bands (:mod:`ser_bench.report.figures`, matplotlib drawn to
inline SVG), and a footer tracing every number to its runs.
Everything is escaped (Jinja2 autoescape); data is embedded as JSON with ``<`` escaped. The page's
Content-Security-Policy lets only its own inline script run, by hash (:func:`script_hash`).
Identical results give a byte-identical page when ``SOURCE_DATE_EPOCH`` fixes the "generated" time.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from .. import __version__
from ..db import Store
from ..errors import BenchError
from ..files import atomic_write
from ..metrics import HIGHER_IS_BETTER
from .fmt import environment

MAIN_METRIC = {"classification": "uar", "regression": "ccc"}


class ReportError(BenchError):
    """The report cannot be built as asked (e.g. a malformed SOURCE_DATE_EPOCH)."""


@dataclass
class Value:
    mean: float
    std: float
    n_folds: int
    runs: list[int]
    cell_ids: list[int] = field(default_factory=list)
    #: filled by ser_bench.report.ci.annotate: bootstrap CI over utterances, and on enhanced
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
    snrs: list[float] = field(default_factory=list)  # leaderboards: the SNR of each column group (for the figure)
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
    return Table(title=title, metric=metric, columns=columns, rows=rows, row_header=["SER model", "enhancer"],
                 snrs=[float(s) for s in snrs])


def mark_best(t: Table) -> None:
    """Set each row's ``best`` flags: per column, the best value among the rows that own it (a
    clean / noisy value repeated on an enhancer's row does not compete again), unless that value
    is significantly worse than noisy (▼). Needs :func:`ser_bench.report.ci.annotate` to have run."""
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


def chart(t: Table) -> str:
    """The leaderboard's figure(s): the metric against SNR, one figure per SER model (matplotlib,
    inline SVG): noisy and each enhancer as lines with their 95 % bootstrap CI bands (from
    :func:`ser_bench.report.ci.annotate`), clean as a dashed horizontal line with its band."""
    from .figures import PALETTE, Reference, Series, snr_figure

    if not t.snrs:
        return ""
    figs = []
    models = list(dict.fromkeys(r["label"][0] for r in t.rows))
    for model in models:
        rows = {r["label"][1]: r for r in t.rows if r["label"][0] == model}
        refs, series = [], []
        base = rows.get("none")
        if base is not None and base["cells"][0] is not None and not np.isnan(base["cells"][0].mean):
            v = base["cells"][0]
            refs.append(Reference("clean", v.mean, *(v.ci or (None, None))))
        for k, (enh, r) in enumerate(rows.items()):
            sub = "noisy" if enh == "none" else "enhanced"
            cells = [v for v, (_, c) in zip(r["cells"], t.columns) if c == sub]
            if not any(v is not None for v in cells):
                continue
            series.append(Series(
                "noisy" if enh == "none" else f"enhanced: {enh}", t.snrs,
                [v.mean if v is not None else None for v in cells],
                [v.ci[0] if v is not None and v.ci else None for v in cells],
                [v.ci[1] if v is not None and v.ci else None for v in cells],
                color=PALETTE[k % len(PALETTE)]))
        title = f"{model} · {t.metric.upper()} against SNR"
        figs.append(snr_figure(series, metric=t.metric, title=title, references=refs, css_class="chart",
                               description="Lines: means over folds; bands: 95% bootstrap CIs over utterances; "
                                           "dashed: clean."))
    return "".join(f for f in figs if f)


def collect(store: Store) -> dict[str, Any]:
    """Everything the report shows, as plain data (also embedded in the page as JSON)."""
    res = store.results_frame()
    res = res[res.kind == "ser"] if not res.empty else res
    if not res.empty and "test_corruption" in res:  # corrupted cells have their own section (report/corruptions.py)
        res = res[res.test_corruption.isna()]
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
            t.chart = chart(t)  # after annotate: the figures draw the CIs
    return {"tables": tables, "runs": runs, "results": res}


def build_report(store: Store, out: Path) -> Path:
    """Write ``out/index.html`` atomically; nothing else in ``out`` is touched."""
    data = collect(store)
    env = environment()
    script = (files("ser_bench") / "report" / "templates" / "sort.js").read_text(encoding="utf-8")
    # cells by their content key and in coordinate order, not by row id: the same results give
    # the same page whichever order (or registry) they were stored in
    cols = ["dataset", "protocol", "ser_model", "enhancer", "noise", "train_condition", "train_snr", "test_condition",
            "test_snr", "fold", "metric"]
    payload = (data["results"].sort_values(cols + ["cell_key"], na_position="first", kind="stable")
               [["cell_key", "run_id", *cols, "value"]].to_dict(orient="records")) if not data["results"].empty else []
    runs = data["runs"]
    html = env.get_template("index.html").render(
        tables=data["tables"],
        run_notes=run_notes(runs) + superseded_notes(data["results"]),
        runs=runs.to_dict(orient="records") if not runs.empty else [],
        generated=_generated_at().strftime("%Y-%m-%d %H:%M UTC"),
        script=Markup(script),  # verbatim: the CSP hash below is of these exact characters
        script_hash=Markup(script_hash(script)),  # quotes must stay quotes in the CSP
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
    # via a temporary file in the same folder so a reader never sees half a page; it gets the mode
    # of a normally created file (0644 under umask 022), so a web server or a colleague can read it
    with atomic_write(out / "index.html", "w", encoding="utf-8") as fh:
        fh.write(html)
    return out / "index.html"


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script: ``'sha256-<base64 digest>'``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def _generated_at() -> datetime:
    """Now, or ``SOURCE_DATE_EPOCH`` (reproducible builds: identical results -> identical page)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise ReportError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in seconds; "
                              "set it to an integer (e.g. $(date +%s)) or unset it") from None
    return datetime.now(timezone.utc)


def superseded_notes(results: pd.DataFrame) -> list[str]:
    """A line when older results were left out for newer ones with the same coordinates."""
    sup = results.attrs.get("superseded") or {}
    if not sup.get("results"):
        return []
    runs = ", ".join(str(r) for r in sup["runs"])
    return [f"{sup['results']} older result(s) of run(s) {runs} are not shown: a newer run computed the same "
            "cells with other settings (e.g. a retrained checkpoint or other options under the same enhancer "
            "name), and only the newest of each is used. `bench runs show RUN` lists a run's settings."]


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
EXTRA_SECTION_MODULES: list[str] = ["ser_bench.report.paper", "ser_bench.report.quality", "ser_bench.report.corruptions"]
