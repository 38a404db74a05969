"""The paper view: our results beside every table of Triantafyllopoulos et al. (Interspeech 2019).

The paper's numbers (Tables 1-6, the paper's own numbering) ship in
``harness/data/paper_tables.json``. For each results table of the paper (2-6) and each of our
datasets that plays one of its corpora (RAVDESS stands in for eNTERFACE) the view lists, row by
row (feature set x SNR x condition):

* the paper's value, ours (mean over folds; for the tables of means, also over our SNRs) with
  its 95 % bootstrap interval over utterances (:mod:`ser_bench.report.ci`), and ours - paper;
* on every enhanced row the share of the clean - noisy gap that enhancement recovers,
  ``(enhanced - noisy) / (clean - noisy)``, for the paper and for us.

Ours is differenced against the paper only where the two measure the same thing: the same
corpus with the same classes (a stand-in corpus, another class set or a corpus of another size
is shown beside the paper but not differenced, and the table says why), and for the tables of
means the same SNRs (Table 3's paper means are recomputed over our SNRs from Tables 4-5).
What differs in the data (stand-in corpus, degraded copy, noise, enhancer, SNRs) is stated
next to each table. :func:`section` plugs the view into ``bench report``.

This module builds the tables and renders them; their data classes are in
:mod:`ser_bench.report.paper_types`, the comparability and data notes (and the facts read from
the store) in :mod:`ser_bench.report.paper_notes`, the figures in
:mod:`ser_bench.report.paper_figures`. Their public names stay importable from here.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .paper_figures import CONDITION_COLORS, SHADES, figures_of
from .paper_notes import HOP_S, comparability, corpus_facts, data_notes, detect_dataset_notes, enhancer_descriptions
from .paper_types import CorpusFacts, Ours, PaperTable, Row, _scale, fmt_share, fmt_value

__all__ = [  # the public names of the paper view before its split (re-exported from the other modules)
    "COORDS", "CONDITION_COLORS", "CorpusFacts", "HOP_S", "MIN_GAP", "Ours", "PAPER_TABLES", "PaperTable", "Row",
    "SHADES", "aggregate", "build_table", "comparability", "corpus_facts", "data_notes", "detect_dataset_notes",
    "enhancer_descriptions", "figures_of", "fmt_share", "fmt_value", "gap_share", "latest", "load_paper_tables",
    "paper_table", "paper_view", "render", "section", "tables_from_store", "text",
]

PAPER_TABLES = Path(__file__).resolve().parents[1] / "data" / "paper_tables.json"
#: Columns that identify a result apart from its run (for keeping the latest run's value).
COORDS = ["dataset", "ser_model", "enhancer", "noise", "protocol", "train_condition", "train_snr",
          "test_condition", "test_snr", "fold", "metric"]  # fmt: skip


@lru_cache(maxsize=4)
def load_paper_tables(path: str | Path = PAPER_TABLES) -> dict[str, Any]:
    """The paper's Tables 1-6 (see the file's ``source``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def paper_table(paper: dict, table_id: str) -> dict[str, Any]:
    return next(t for t in paper["tables"] if t["id"] == table_id)


# ----------------------------------------------------------------------------- gaps and the latest run


def gap_share(clean: float | None, noisy: float | None, enhanced: float | None, min_gap: float = 1e-9) -> float | None:
    """Share of the clean - noisy gap that enhancement recovers: (enh - noisy) / (clean - noisy).

    None when a value is missing or noisy is less than ``min_gap`` below clean (no real gap to
    recover: the share would divide by noise)."""
    if clean is None or noisy is None or enhanced is None:
        return None
    gap = clean - noisy
    if not gap >= min_gap:
        return None
    return (enhanced - noisy) / gap


def latest(results: pd.DataFrame) -> pd.DataFrame:
    """One value per result coordinate: the one from the most recent run."""
    if results.empty:
        return results
    r = results.copy()
    for c in ("train_snr", "test_snr"):
        r[c + "_k"] = r[c].fillna(-999.0)
    keys = [c + "_k" if c in ("train_snr", "test_snr") else c for c in COORDS]
    r = r.sort_values("run_id", kind="stable").drop_duplicates(keys, keep="last")
    return r.drop(columns=["train_snr_k", "test_snr_k"])


# ----------------------------------------------------------------------------- our numbers


def aggregate(df: pd.DataFrame, metric: str, details: dict[int, Any] | None) -> Ours:
    """Mean over folds (and over SNRs when ``df`` spans several) in the paper's units, with the
    bootstrap interval over utterances of that very mean (every (SNR, fold) is a stratum)."""
    if df.empty:
        return Ours()
    scale = _scale(metric)
    # mean over SNR conditions of the mean over folds
    keys = [df.train_snr.fillna(-999.0), df.test_snr.fillna(-999.0)]
    value = float(df.groupby(keys)["value"].mean().mean()) * scale
    out = Ours(value=value, runs=sorted({int(r) for r in df.run_id}))
    if "cell_id" in df:
        out.cell_ids = sorted(int(c) for c in df.cell_id)
    if details and out.cell_ids:
        from dataclasses import replace

        from .ci import bootstrap_ci

        ds = []
        for r in df.itertuples():
            d = details.get(int(r.cell_id))
            if d is not None:
                ds.append(replace(d, fold=f"{r.train_snr}|{r.test_snr}|{d.fold}"))
        ci = bootstrap_ci(ds) if ds else None
        if ci is not None:
            out.lo, out.hi = ci[1] * scale, ci[2] * scale
    return out


# ----------------------------------------------------------------------------- the tables


def _conds(d: pd.DataFrame, protocol: str, noise: str, kind: str, enhancer: str = "none") -> pd.DataFrame:
    """Rows of ``d`` for the noisy (or enhanced) condition of ``protocol``."""
    x = d[(d.protocol == protocol) & (d.noise == noise) & (d.test_condition == kind) & (d.enhancer == enhancer)]
    if protocol == "mismatched":
        x = x[x.train_condition == "clean"]
    elif protocol == "matched":
        x = x[(x.train_condition == kind) & (x.train_snr == x.test_snr)]
    else:
        x = x[x.train_condition == kind]
    return x


def _clean(d: pd.DataFrame, protocol: str) -> pd.DataFrame:
    c = d[(d.train_condition == "clean") & (d.test_condition == "clean")]
    same = c[c.protocol == protocol]
    return same if not same.empty else c


def _order_enhancers(names: set[str], paper: dict) -> list[str]:
    comparable = paper.get("comparable_enhancers", [])
    return [e for e in comparable if e in names] + sorted(names - set(comparable))


#: the smallest clean - noisy gap a recovered share is computed for (paper units): 2 UAR points, 0.02 CCC
MIN_GAP = {"uar": 2.0, "ccc": 0.02}


def _add_enhanced(rows: list[Row], features: str, snr: str, clean_row: Row, noisy_row: Row, enh: str, ours: Ours,
                  paper_v: float | None, snr_value: float | None, train_snr: float | None = None,
                  metric: str = "uar") -> None:  # fmt: skip
    g = MIN_GAP.get(metric, 1e-9)
    rows.append(Row(features, snr, f"enhanced ({enh})", "enhanced", paper_v, ours, snr_value=snr_value,
                    train_snr=train_snr, enhancer=enh,
                    gap_paper=gap_share(clean_row.paper, noisy_row.paper, paper_v, g),
                    gap_ours=gap_share(clean_row.ours.value, noisy_row.ours.value, ours.value, g)))


def build_table(spec: dict, corpus: str, dataset: str, noise: str, res: pd.DataFrame, paper: dict,
                details: dict[int, Any] | None = None, facts: CorpusFacts | None = None) -> PaperTable | None:  # fmt: skip
    """One paper table for one of our datasets and noise sources, from deduplicated results."""
    metric = spec["metric"][corpus] if isinstance(spec["metric"], dict) else spec["metric"]
    proto, kind = spec["protocol"], spec["kind"]
    models = {v: k for k, v in paper["ser_models"].items()}
    d_all = res[(res.dataset == dataset) & (res.metric == metric)]
    rows: list[Row] = []
    snrs_seen: set[float] = set()
    enh_seen: set[str] = set()
    per_snr_curves: dict[str, dict[str, list[tuple[float, Ours]]]] = {}
    paper_snrs = [float(s) for s in paper["source"]["snrs_db"]]
    for features, pv in spec["values"][corpus].items():
        model = models.get(features)
        d = d_all[d_all.ser_model == model]
        if d.empty or (kind != "means" and d[d.protocol == proto].empty) or (
                kind == "means" and _conds(d, proto, noise, "noisy").empty):
            continue
        clean = Row(features, "", "clean", "clean", pv.get("clean"), aggregate(_clean(d, proto), metric, details))
        enhancers = _order_enhancers(set(d[(d.protocol == proto) & (d.noise == noise)].enhancer) - {"none"}, paper)
        enh_seen.update(enhancers)
        if kind == "means":
            nz = _conds(d, proto, noise, "noisy")
            ours_snrs = sorted(set(nz.test_snr.dropna()))
            snrs_seen.update(ours_snrs)
            per_snr = spec.get("per_snr_from", {}).get(corpus)
            same = ours_snrs == paper_snrs
            if same or not per_snr:
                p_noisy, p_enh, label = pv.get("noisy"), pv.get("enhanced"), "mean"
                differenced = same
            else:  # the paper's mean over our SNRs, from its per-SNR table
                src = paper_table(paper, per_snr)["values"][corpus][features]
                p_noisy = _mean_of(src["noisy"], ours_snrs)
                p_enh = _mean_of(src["enhanced"], ours_snrs)
                label, differenced = f"mean of {', '.join(f'{s:g}' for s in ours_snrs)} dB", True
            noisy = Row(features, label, "noisy", "noisy", p_noisy, aggregate(nz, metric, details))
            rows += [clean, noisy]
            curves = per_snr_curves.setdefault(features, {})
            curves["noisy"] = [(s, aggregate(nz[nz.test_snr == s], metric, details)) for s in ours_snrs]
            for e in enhancers:
                en = _conds(d, proto, noise, "enhanced", e)
                en = en[en.test_snr.isin(ours_snrs)]
                curves[f"enhanced ({e})"] = [(s, aggregate(en[en.test_snr == s], metric, details)) for s in ours_snrs]
                _add_enhanced(rows, features, label, clean, noisy, e, aggregate(en, metric, details), p_enh, None,
                              metric=metric)
            if not differenced:
                for r in rows[-(1 + len(enhancers)):]:
                    r.paper_other_snrs = True
        elif kind == "per_snr":
            rows.append(clean)
            nz_all = _conds(d, proto, noise, "noisy")
            for s in sorted(set(nz_all.test_snr.dropna())):
                snrs_seen.add(s)
                noisy = Row(features, f"{s:g} dB", "noisy", "noisy", pv["noisy"].get(f"{s:g}"),
                            aggregate(nz_all[nz_all.test_snr == s], metric, details), snr_value=s)
                rows.append(noisy)
                for e in enhancers:
                    en = _conds(d, proto, noise, "enhanced", e)
                    _add_enhanced(rows, features, f"{s:g} dB", clean, noisy, e,
                                  aggregate(en[en.test_snr == s], metric, details), pv["enhanced"].get(f"{s:g}"), s,
                                  metric=metric)
        else:  # multi_snr
            rows.append(clean)
            nz_all = _conds(d, proto, noise, "noisy")
            paper_rows = {(float(r["train_snr"]), float(r["test_snr"])): r for r in pv["rows"]}
            pairs = sorted(set(zip(nz_all.train_snr, nz_all.test_snr)) | set(paper_rows))
            avg_sel: dict[str, list[pd.DataFrame]] = {}
            for a, b in pairs:
                pr = paper_rows.get((a, b), {})
                sel = nz_all[(nz_all.train_snr == a) & (nz_all.test_snr == b)]
                if sel.empty:
                    continue
                snrs_seen.update({a, b})
                label = f"train {a:g} → test {b:g} dB"
                noisy = Row(features, label, "noisy", "noisy", pr.get("noisy"), aggregate(sel, metric, details),
                            snr_value=b, train_snr=a)
                rows.append(noisy)
                avg_sel.setdefault("none", []).append(sel)
                for e in enhancers:
                    en = _conds(d, proto, noise, "enhanced", e)
                    en = en[(en.train_snr == a) & (en.test_snr == b)]
                    avg_sel.setdefault(e, []).append(en)
                    _add_enhanced(rows, features, label, clean, noisy, e, aggregate(en, metric, details),
                                  pr.get("enhanced"), b, a, metric=metric)
            grid = set(paper_rows)
            if avg_sel and {(r.train_snr, r.test_snr) for s in avg_sel["none"] for r in s.itertuples()} == grid:
                avg = pv.get("average", {})
                noisy = Row(features, "average", "noisy", "noisy", avg.get("noisy"),
                            aggregate(pd.concat(avg_sel["none"]), metric, details))
                rows.append(noisy)
                for e in enhancers:
                    _add_enhanced(rows, features, "average", clean, noisy, e,
                                  aggregate(pd.concat(avg_sel[e]), metric, details), avg.get("enhanced"), None,
                                  metric=metric)
    if not rows:
        return None
    why = comparability(paper, corpus, dataset, facts)
    for r in rows:
        if not why and r.paper is not None and r.ours.value is not None and not r.paper_other_snrs:
            r.delta = r.ours.value - r.paper
    t = PaperTable(id=spec["id"], label=spec["label"], caption=spec["caption"], corpus=corpus, dataset=dataset,
                   noise=noise, metric=metric, rows=rows, comparable=not why, not_differenced=why)
    if any(r.paper_other_snrs for r in rows):
        t.not_differenced.append("the paper's means are over its six SNRs (-5 to 20 dB) and ours over "
                                 f"{', '.join(f'{s:g}' for s in sorted(snrs_seen))} dB, so the means are not "
                                 "differenced; run all six SNRs to compare them.")
    t.runs = [{"run_id": r} for r in sorted({x for row in rows for x in row.ours.runs})]
    t.snrs = sorted(snrs_seen)
    t.curves = per_snr_curves
    t.enhancers = _order_enhancers(enh_seen, paper)
    return t


def _mean_of(per_snr: dict[str, float], snrs: list[float]) -> float | None:
    vals = [per_snr.get(f"{s:g}") for s in snrs]
    return float(np.mean(vals)) if vals and all(v is not None for v in vals) else None


def paper_view(results: pd.DataFrame, runs: pd.DataFrame | None = None, paper: dict | None = None,
               dataset_notes: dict[str, list[str]] | None = None, details: dict[int, Any] | None = None,
               facts: dict[str, CorpusFacts] | None = None, enhancer_descriptions: dict[str, str] | None = None,
               figures: bool = False) -> list[PaperTable]:  # fmt: skip
    """Tables 2-6 of the paper beside ours, for every dataset that plays one of its corpora."""
    paper = paper or load_paper_tables()
    dataset_notes = dataset_notes or {}
    facts = facts or {}
    if results is None or results.empty:
        return []
    res = results[results.kind == "ser"] if "kind" in results else results
    res = latest(res)
    by_corpus: dict[str, list[str]] = {}
    for ds, info in paper["datasets"].items():
        by_corpus.setdefault(info["corpus"], []).append(ds)
    out: list[PaperTable] = []
    for spec in paper["tables"]:
        if spec["kind"] == "corpora":
            continue
        for corpus in spec["values"]:
            for ds in by_corpus.get(corpus, []):
                d = res[(res.dataset == ds) & (res.protocol == spec["protocol"])]
                for noise in sorted(set(d.noise) - {"-"}):
                    t = build_table(spec, corpus, ds, noise, res, paper, details, facts.get(ds))
                    if t is None:
                        continue
                    t.notes = data_notes(paper, corpus, ds, facts.get(ds), noise, t.enhancers, t.snrs,
                                         dataset_notes.get(ds, []), enhancer_descriptions, _paper_snrs(spec, corpus))
                    if runs is not None and not runs.empty:
                        info = runs.set_index("id")
                        t.runs = [{"run_id": r["run_id"], "wall_s": _float(info.at[r["run_id"], "wall_s"]),
                                   "status": str(info.at[r["run_id"], "status"])}
                                  for r in t.runs if r["run_id"] in info.index]  # fmt: skip
                    if figures:
                        t.figures = figures_of(t)
                    out.append(t)
    return out


def _paper_snrs(spec: dict, corpus: str) -> list[float] | None:
    """The SNRs of a paper table when they are not the paper's usual six (Table 6: 5, 10, 15 dB)."""
    if spec["kind"] != "multi_snr":
        return None
    rows = next(iter(spec["values"][corpus].values()))["rows"]
    return sorted({float(r[k]) for r in rows for k in ("train_snr", "test_snr")})


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


# ----------------------------------------------------------------------------- HTML


def render(tables: list[PaperTable], paper: dict | None = None) -> str:
    """HTML for the tables (Jinja2, autoescaped)."""
    from .fmt import environment

    paper = paper or load_paper_tables()
    env = environment()  # autoescaped; no "-0.0" in the cells
    env.filters["share"] = fmt_share
    return env.get_template("paper.html").render(tables=tables, source=paper["source"])


def tables_from_store(store: Any, figures: bool = False) -> list[PaperTable]:
    """The paper view of everything in ``store`` ([] when no paper corpus has results)."""
    results = store.results_frame()
    if results.empty:
        return []
    results = results[results.kind == "ser"]
    paper = load_paper_tables()
    present = sorted(set(paper["datasets"]) & set(results.dataset))
    if not present:
        return []
    runs = store.runs_frame()
    from .ci import details_by_cell

    res = latest(results[results.dataset.isin(present)])
    details = details_by_cell(store, {int(c) for c in res.cell_id})
    return paper_view(res, runs, paper, detect_dataset_notes(runs, present), details,
                      corpus_facts(store, res, present), enhancer_descriptions(set(res.enhancer) - {"none"}),
                      figures=figures)  # fmt: skip


def text(tables: list[PaperTable]) -> str:
    """The tables as plain text (``bench paper`` prints them after the run)."""
    src = load_paper_tables()["source"]
    lines: list[str] = [f"The paper: {src['citation']}", f"Its noise: {src['noise']}. Its enhancer: {src['enhancer']}.",
                        "Ours: mean over folds, 95 % bootstrap CI; Δ = ours - paper; gap = (enhanced - noisy) / "
                        "(clean - noisy).", ""]
    head = ["features", "SNR", "condition", "paper", "ours", "95 % CI", "Δ", "gap paper", "gap ours"]
    for t in tables:
        ds = f" (ours: {t.dataset})" if t.dataset.lower() != t.corpus.lower() else ""
        lines.append(f"{t.label} · {t.corpus}{ds} · noise {t.noise}")
        if t.not_differenced:
            lines.append("  not differenced: " + " ".join(t.not_differenced))
        for n in t.notes:
            lines.append(f"  - {n}")
        body = [head]
        for r in t.rows:
            ci = f"[{t.fmt(r.ours.lo)}, {t.fmt(r.ours.hi)}]" if r.ours.lo is not None else ""
            enh = r.kind == "enhanced"
            body.append([r.features, r.snr, r.condition, t.fmt_paper(r.paper),
                         t.fmt(r.ours.value), ci, t.fmt(r.delta, True) if r.delta is not None else "",
                         fmt_share(r.gap_paper) if enh else "", fmt_share(r.gap_ours) if enh else ""])
        widths = [max(len(row[k]) for row in body) for k in range(len(head))]
        for row in body:
            lines.append("  " + "  ".join(c.ljust(w) if k < 3 else c.rjust(w) for k, (c, w) in
                                          enumerate(zip(row, widths))).rstrip())
        lines.append("")
    return "\n".join(lines)


def section(store: Any) -> dict[str, str] | None:
    """The report section (``ser_bench.report.build`` calls it): None when no paper corpus has results."""
    tables = tables_from_store(store, figures=True)
    if not tables:
        return None
    return {"title": "The paper's tables beside ours: Triantafyllopoulos et al. (Interspeech 2019)",
            "html": render(tables)}
