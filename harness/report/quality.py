"""Report section: enhancement quality and emotion preservation beside SER, and the trade-off.

For every dataset x noise source with quality cells (``bench run ... --quality``):

* a table, one row per (enhancer, SNR) -- ``noisy`` is the unenhanced input -- with the quality
  measures (PESQ, STOI, SI-SDR, SNR and their improvements), the preservation measures (F0 /
  loudness / HNR / alpha-ratio contour fidelity, eGeMAPS distance), the failure count, and the
  SER score (and its change over noisy) of every SER model x protocol at that condition;
* figures (:mod:`ser_bench.report.figures`): each measure (with its 95 % bootstrap CI band over
  utterances) and each SER score (UAR in %) against SNR, one line per enhancer.

Then the trade-off over every (dataset, noise, SNR, enhancer, SER model) point: the SER change
(enhanced - noisy) against the change of each measure (enhanced - noisy) and against the level of
each preservation measure on the enhanced speech, with Pearson and Spearman correlations, and
which measure predicts SER benefit best (largest |Spearman rho|, n >= 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..quality import METRICS, pesq_implementation
from ..quality_runner import REFERENCE_NOTE
from .ci import mean_ci
from .figures import Point, Series, scatter_figure, snr_figure
from .fmt import environment, num

COLORS = ["#555555", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
QUALITY_COLS = ["pesq", "stoi", "si_sdr", "si_sdr_i", "snr", "snr_i"]
PRESERVATION_COLS = ["f0_rmse", "f0_corr", "vuv_error", "loudness_corr", "hnr_rmse", "alpha_corr", "egemaps_dist"]
#: measures whose change (enhanced - noisy) is correlated with the SER change (the improvements
#: si_sdr_i / snr_i equal the SI-SDR / SNR changes and are not repeated)
DELTA_MEASURES = ["pesq", "stoi", "si_sdr", "snr", *PRESERVATION_COLS]
LABELS = {
    "pesq": "PESQ", "stoi": "STOI", "si_sdr": "SI-SDR", "si_sdr_i": "ΔSI-SDR", "snr": "SNR", "snr_i": "ΔSNR",
    "f0_rmse": "F0 RMSE", "f0_corr": "F0 r", "vuv_error": "V/UV err", "loudness_corr": "loudness r",
    "hnr_rmse": "HNR RMSE", "alpha_corr": "α-ratio r", "egemaps_dist": "eGeMAPS dist",
}
UNITS = {"si_sdr": "dB", "si_sdr_i": "dB", "snr": "dB", "snr_i": "dB", "f0_rmse": "semitones", "hnr_rmse": "dB"}
FIG_SIZE = (3.9, 2.8)  # inches: the small multiples of the quality section
MIN_POINTS = 4  # correlations on fewer points are shown but not ranked


def _fmt(metric: str, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if metric in ("pesq",):
        return num(v, ".2f")
    if metric in ("stoi", "f0_corr", "loudness_corr", "alpha_corr", "vuv_error"):
        return num(v, ".3f")
    return num(v, ".1f") if abs(v) >= 10 else num(v, ".2f")  # num: a value rounding to 0 has no sign


def _latest(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per coordinate: the most recently stored cell wins."""
    if df.empty:
        return df
    d = df.assign(_snr=df.test_snr.fillna(-999.0), _tsnr=df.train_snr.fillna(-999.0))
    k = [c if c not in ("test_snr", "train_snr") else {"test_snr": "_snr", "train_snr": "_tsnr"}[c] for c in keys]
    return d.sort_values("cell_id").drop_duplicates(k, keep="last").drop(columns=["_snr", "_tsnr"])


def quality_means(results: pd.DataFrame) -> pd.DataFrame:
    """Quality cells -> one row per (dataset, noise, enhancer, test_snr), one column per measure."""
    q = results[results.kind == "quality"] if not results.empty else results
    if q.empty:
        return pd.DataFrame()
    q = _latest(q, ["dataset", "noise", "enhancer", "test_snr", "metric"])
    wide = q.pivot_table(index=["dataset", "noise", "enhancer", "test_snr"], columns="metric", values="value",
                         aggfunc="last").reset_index()
    cid = q.groupby(["dataset", "noise", "enhancer", "test_snr"])["cell_id"].max().rename("cell_id").reset_index()
    return wide.merge(cid, on=["dataset", "noise", "enhancer", "test_snr"])


def ser_means(results: pd.DataFrame) -> pd.DataFrame:
    """SER cells -> mean over folds per (dataset, noise, protocol, ser_model, metric, enhancer, test_snr)
    for the noisy (enhancer "none") and enhanced conditions (multi-snr: train SNR = test SNR)."""
    s = results[results.kind == "ser"] if not results.empty else results
    if s.empty:
        return pd.DataFrame()
    s = s[s.metric.isin(["uar", "ccc"]) & s.test_condition.isin(["noisy", "enhanced"])]
    s = s[(s.protocol != "multi-snr") | (s.train_snr == s.test_snr)]
    s = _latest(s, ["dataset", "ser_model", "enhancer", "noise", "protocol", "train_condition", "train_snr",
                    "test_condition", "test_snr", "fold", "metric"])
    if s.empty:
        return pd.DataFrame()
    return (s.groupby(["dataset", "noise", "protocol", "ser_model", "metric", "enhancer", "test_snr"])["value"]
            .agg(["mean", "count"]).reset_index())


def tradeoff_points(qm: pd.DataFrame, sm: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, noise, SNR, enhancer, protocol, SER model): d_ser and every d_<measure>,
    lvl_<measure> (the enhanced speech's preservation measures)."""
    if qm.empty or sm.empty:
        return pd.DataFrame()
    rows = []
    key = ["dataset", "noise", "test_snr"]
    noisy_q = qm[qm.enhancer == "none"].set_index(key)
    for (ds, noise, proto, model, metric), g in sm.groupby(["dataset", "noise", "protocol", "ser_model", "metric"]):
        base = g[g.enhancer == "none"].set_index("test_snr")["mean"]
        for r in g[g.enhancer != "none"].itertuples():
            if r.test_snr not in base.index:
                continue
            qe = qm[(qm.dataset == ds) & (qm.noise == noise) & (qm.enhancer == r.enhancer) & (qm.test_snr == r.test_snr)]
            if qe.empty or (ds, noise, r.test_snr) not in noisy_q.index:
                continue
            qe, qn = qe.iloc[0], noisy_q.loc[(ds, noise, r.test_snr)]
            if isinstance(qn, pd.DataFrame):
                qn = qn.iloc[-1]
            row = {"dataset": ds, "noise": noise, "protocol": proto, "ser_model": model, "ser_metric": metric,
                   "enhancer": r.enhancer, "snr": float(r.test_snr), "ser_noisy": float(base[r.test_snr]),
                   "ser_enhanced": float(r.mean), "d_ser": float(r.mean - base[r.test_snr])}
            for m in DELTA_MEASURES:
                a, b = qe.get(m, np.nan), qn.get(m, np.nan)
                row[f"d_{m}"] = float(a - b) if pd.notna(a) and pd.notna(b) else np.nan
            for m in PRESERVATION_COLS:
                a = qe.get(m, np.nan)
                row[f"lvl_{m}"] = float(a) if pd.notna(a) else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Corr:
    measure: str
    variant: str  # "change" | "level"
    n: int
    pearson: float | None
    pearson_p: float | None
    spearman: float | None
    spearman_p: float | None
    expected: bool | None  # sign as expected (better preservation/quality <-> larger SER gain)?

    @property
    def label(self) -> str:
        name = LABELS.get(self.measure, self.measure)
        return f"Δ {name} (enhanced − noisy)" if self.variant == "change" else f"{name} of the enhanced speech"


def correlations(points: pd.DataFrame) -> list[Corr]:
    """Pearson and Spearman correlation of d_ser with each measure's change and level."""
    from scipy.stats import pearsonr, spearmanr

    out = []
    if points.empty:
        return out
    cols = [(m, "change", f"d_{m}") for m in DELTA_MEASURES] + [(m, "level", f"lvl_{m}") for m in PRESERVATION_COLS]
    for m, variant, col in cols:
        if col not in points:
            continue
        d = points[["d_ser", col]].dropna()
        n = len(d)
        pr = pp = sr = sp = None
        if n >= 3 and d[col].std() > 0 and d.d_ser.std() > 0:
            r = pearsonr(d[col], d.d_ser)
            pr, pp = float(r[0]), float(r[1])
            s = spearmanr(d[col], d.d_ser)
            sr, sp = float(s[0]), float(s[1])
            sr = None if math.isnan(sr) else sr
        exp = None
        if sr is not None:
            exp = (sr > 0) == METRICS[m][1]
        out.append(Corr(m, variant, n, pr, pp, sr, sp, exp))
    return sorted(out, key=lambda c: (c.spearman is None, -(abs(c.spearman) if c.spearman is not None else 0)))


def best_predictor(corrs: list[Corr]) -> Corr | None:
    ranked = [c for c in corrs if c.spearman is not None and c.n >= MIN_POINTS]
    return max(ranked, key=lambda c: (abs(c.spearman), abs(c.pearson or 0))) if ranked else None


# ----------------------------------------------------------------------------- tables


@dataclass
class QTable:
    dataset: str
    noise: str
    columns: list[tuple[Any, str]]  # (measure name | ("ser" | "dser", protocol, model, metric), header)
    rows: list[dict[str, Any]]  # {"label": [enhancer, snr], "cells": [(text, sort value, tooltip, css)]}
    charts: list[str] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (series name, colour)


def _per_utt_values(store: Any, cell_ids: list[int]) -> dict[int, dict[str, list[float]]]:
    """quality cell id -> measure -> per-utterance values (for the tooltips' CIs)."""
    import json

    cells = store.cells_frame()
    out: dict[int, dict[str, list[float]]] = {}
    if cells.empty:
        return out
    for r in cells[cells.id.isin(cell_ids)].itertuples():
        try:
            d = json.loads(r.predictions_json or "{}")
        except ValueError:
            continue
        names = d.get("metrics", [])
        out[int(r.id)] = {m: [row[i + 1] for row in d.get("values", []) if row[i + 1] is not None]
                          for i, m in enumerate(names)}
    return out


def quality_tables(qm: pd.DataFrame, sm: pd.DataFrame, per_utt: dict[int, dict[str, list[float]]]) -> list[QTable]:
    out = []
    if qm.empty:
        return out
    for (ds, noise), g in qm.groupby(["dataset", "noise"], sort=True):
        snrs = sorted(set(g.test_snr))
        enhancers = ["none"] + sorted(set(g.enhancer) - {"none"})
        s = sm[(sm.dataset == ds) & (sm.noise == noise)] if not sm.empty else sm
        ser_keys = sorted({(r.protocol, r.ser_model, r.metric) for r in s.itertuples()}) if not s.empty else []
        cols = [(m, LABELS[m]) for m in QUALITY_COLS + PRESERVATION_COLS if m in g.columns]
        cols.append(("failures", "failed (utt × measure)"))
        for proto, model, metric in ser_keys:
            cols.append((("ser", proto, model, metric), f"{metric.upper()} {model} ({proto})"))
            cols.append((("dser", proto, model, metric), f"Δ{metric.upper()} vs noisy"))
        rows = []
        cis: dict[tuple[str, float, str], tuple[float, float] | None] = {}  # (enhancer, snr, measure) -> 95% CI
        for enh in enhancers:
            for snr in snrs:
                q = g[(g.enhancer == enh) & (g.test_snr == snr)]
                if q.empty:
                    continue
                q = q.iloc[0]
                vals = per_utt.get(int(q.cell_id), {})
                cells = []
                for key, _ in cols:
                    if isinstance(key, tuple):
                        kind, proto, model, metric = key
                        sel = s[(s.protocol == proto) & (s.ser_model == model) & (s.metric == metric) & (s.test_snr == snr)]
                        mine = sel[sel.enhancer == enh]["mean"]
                        base = sel[sel.enhancer == "none"]["mean"]
                        if kind == "ser":
                            v = float(mine.iloc[0]) if len(mine) else None
                            cells.append((f"{100 * v:.1f}" if v is not None else "–", v, "mean over folds", ""))
                        else:
                            v = float(mine.iloc[0] - base.iloc[0]) if len(mine) and len(base) and enh != "none" else None
                            css = "" if v is None else ("pos" if v > 0 else "neg" if v < 0 else "")
                            cells.append((f"{100 * v:+.1f}" if v is not None else "–", v, "enhanced − noisy", css))
                        continue
                    if key == "failures":
                        v = q.get("failures", np.nan)
                        n = q.get("n_utts", np.nan)
                        txt = f"{v:.0f}" if pd.notna(v) else "–"
                        cells.append((txt, float(v) if pd.notna(v) else None, f"of {n:.0f} utterances" if pd.notna(n) else "",
                                      "warn" if pd.notna(v) and v > 0 else ""))
                        continue
                    v = q.get(key, np.nan)
                    v = float(v) if pd.notna(v) else None
                    ci = cis[(enh, snr, key)] = mean_ci(vals.get(key, []))
                    failed = q.get(f"failed_{key}", np.nan)
                    tip = METRICS[key][2] + (f" · 95% CI [{_fmt(key, ci[0])}, {_fmt(key, ci[1])}]" if ci else "")
                    tip += f" · over {len(vals.get(key, []))} utterances" if vals else ""
                    tip += f" · failed on {failed:.0f}" if pd.notna(failed) and failed else ""
                    cells.append((_fmt(key, v), v, tip, ""))
                rows.append({"label": ["noisy (input)" if enh == "none" else enh, f"{snr:g}"], "snr": snr, "cells": cells})
        t = QTable(ds, noise, cols, rows)
        series_of = {enh: COLORS[i % len(COLORS)] for i, enh in enumerate(enhancers)}
        for m in ["pesq", "stoi", "si_sdr", "f0_rmse", "f0_corr", "vuv_error", "loudness_corr", "egemaps_dist"]:
            if m not in g.columns:
                continue
            series = []
            for e in enhancers:
                ci = [cis.get((e, snr, m)) for snr in snrs]
                series.append(Series("noisy" if e == "none" else e, snrs, [_val(g, e, snr, m) for snr in snrs],
                                     [c[0] if c else None for c in ci], [c[1] if c else None for c in ci],
                                     color=series_of[e]))
            arrow = "↑" if METRICS[m][1] else "↓"
            t.charts.append(snr_figure(series, metric=m, title=f"{LABELS[m]} {arrow}", size=FIG_SIZE, legend="none",
                                       css_class="chart qchart"))
        for proto, model, metric in ser_keys:
            sel = s[(s.protocol == proto) & (s.ser_model == model) & (s.metric == metric)]
            series = []
            for e in enhancers:
                se = sel[sel.enhancer == e].set_index("test_snr")["mean"]
                series.append(Series("noisy" if e == "none" else e, snrs,
                                     [float(se[x]) if x in se.index else None for x in snrs], color=series_of[e]))
            t.charts.append(snr_figure(series, metric=metric, title=f"{metric.upper()} · {model} ({proto}) ↑",
                                       size=FIG_SIZE, legend="none", css_class="chart qchart"))
        t.charts = [c for c in t.charts if c]
        t.legend = [("noisy" if e == "none" else e, series_of[e]) for e in enhancers]
        out.append(t)
    return out


def _val(g: pd.DataFrame, enh: str, snr: float, m: str) -> float | None:
    r = g[(g.enhancer == enh) & (g.test_snr == snr)]
    if r.empty or m not in r or pd.isna(r.iloc[0][m]):
        return None
    return float(r.iloc[0][m])


# ----------------------------------------------------------------------------- section


def tradeoff(points: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (protocol, SER metric): correlations, the best predictor and scatter plots."""
    out = []
    if points.empty:
        return out
    enh_colors = {e: COLORS[1 + i % (len(COLORS) - 1)] for i, e in enumerate(sorted(set(points.enhancer)))}
    for (proto, metric), g in points.groupby(["protocol", "ser_metric"], sort=True):
        corrs = correlations(g)
        best = best_predictor(corrs)
        plots = []
        for c in corrs:
            if c.variant != "change" or c.spearman is None:
                continue
            col = f"d_{c.measure}"
            k = 100.0 if metric == "uar" else 1.0  # UAR in % (points), CCC raw
            pts = [Point(float(r[col]), k * float(r.d_ser), r.enhancer,
                         f"{r.dataset} · {r.noise} · {r.snr:g} dB · {r.enhancer} · {r.ser_model}: "
                         f"Δ{metric.upper()} {num(k * r.d_ser, '+.3g')}, Δ{LABELS[c.measure]} {num(r[col], '+.3g')}")
                   for _, r in g.iterrows() if pd.notna(r[col])]
            unit = UNITS.get(c.measure, "")
            plots.append(scatter_figure(
                pts, title=f"Δ{metric.upper()} vs Δ{LABELS[c.measure]} (ρ = {num(c.spearman, '+.2f')})",
                xlabel=f"Δ {LABELS[c.measure]}" + (f" ({unit})" if unit else ""),
                ylabel=f"Δ {metric.upper()} (% points)" if metric == "uar" else f"Δ {metric.upper()}",
                colors=enh_colors, size=FIG_SIZE, css_class="chart scatter"))
        out.append({"protocol": proto, "metric": metric, "n": len(g), "corrs": corrs, "best": best,
                    "plots": [p for p in plots if p], "legend": list(enh_colors.items()),
                    "points": g.sort_values(["dataset", "noise", "enhancer", "ser_model", "snr"]).to_dict("records")})
    return out


def _significance_note(b: Corr, n_tests: int) -> str:
    bonferroni = 0.05 / max(1, n_tests)
    if b.spearman_p >= 0.05:
        return "; not significant at the 5 % level: no measure reliably predicts SER benefit on these points"
    if b.spearman_p >= bonferroni:
        return (f"; significant at 5 % on its own, but not after a Bonferroni correction for the {n_tests} "
                f"correlations compared (p < {bonferroni:.2g} needed), so treat it as a hint")
    return f"; significant after a Bonferroni correction for the {n_tests} correlations compared"


def closing_note(trade: list[dict[str, Any]]) -> list[str]:
    """Plain-text sentences: which measure best predicts SER benefit, per protocol."""
    lines = []
    for t in trade:
        b = t["best"]
        if b is None:
            lines.append(f"{t['protocol']} ({t['metric'].upper()}): too few points ({t['n']}) to rank the measures "
                         f"(need {MIN_POINTS} with varying values).")
            continue
        lines.append(
            f"{t['protocol']} ({t['metric'].upper()}, {t['n']} points): the best predictor of SER benefit is "
            f"{b.label}: Spearman ρ = {b.spearman:+.2f} (p = {b.spearman_p:.2g}), Pearson r = "
            f"{b.pearson:+.2f} (p = {b.pearson_p:.2g}), n = {b.n}"
            + ("" if b.expected else "; note its sign is opposite to 'better quality/preservation → larger gain'")
            + _significance_note(b, sum(c.spearman is not None for c in t["corrs"])) + "."
        )
    return lines


def section(store: Any) -> dict[str, str] | None:
    """The report section (``ser_bench.report.build`` calls it): None without quality cells."""
    results = store.results_frame()
    if results.empty or "quality" not in set(results.kind):
        return None
    qm = quality_means(results)
    sm = ser_means(results)
    per_utt = _per_utt_values(store, [int(c) for c in qm.cell_id]) if not qm.empty else {}
    tables = quality_tables(qm, sm, per_utt)
    trade = tradeoff(tradeoff_points(qm, sm))
    return {"title": "Enhancement quality, emotion preservation and the trade-off with SER", "html": render(tables, trade)}


def render(tables: list[QTable], trade: list[dict[str, Any]]) -> str:
    from markupsafe import Markup

    env = environment()  # autoescaped; no "-0.0" in any cell
    for t in tables:
        t.charts = [Markup(c) for c in t.charts]  # built above with every text escaped
    for tr in trade:
        tr["plots"] = [Markup(p) for p in tr["plots"]]
    return env.get_template("quality.html").render(
        tables=tables, trade=trade, closing=closing_note(trade), pesq=pesq_implementation(),
        reference=REFERENCE_NOTE, metrics=METRICS, labels=LABELS, delta_measures=DELTA_MEASURES,
        fmt=_fmt,
    )
