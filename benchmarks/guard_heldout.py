"""The guard against the two published alternatives, over noise draws (issue 22, parts 4-5).

Reads results databases of mismatched runs that hold, beside ``none``, an inner enhancer X and
any of its wrappers ``guarded-X`` (calibrated ramp), ``oadd-X`` (observation adding, one w) and
``snrswitch-X`` (NRSER-style switch), each run once per noise draw (``--seed``). For every
dataset x SER model x SNR x condition it prints the UAR per draw (bootstrap 95 % CI over
utterances, fold-stratified, as ``bench report``), the mean and the spread (min..max) over
draws, and checks each wrapper's two promises in every draw:

1. no harm: UAR >= noisy - 1 pp at every SNR;
2. keep the gain: at -5 and 0 dB, UAR - noisy >= 80 % of X's gain over noisy (where X gains).

    python benchmarks/guard_heldout.py --db emodb.db --db ravdess.db [--json out.json]

Runs of one configuration under several seeds share a database: the results frame's newest-only
rule would keep one draw, so every stored cell is read (``superseded=True``) and grouped by its
run's seed.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WRAPPERS = ("guarded-", "oadd-", "snrswitch-")
HARM_PP = 1.0
KEEP_SHARE = 0.8
KEEP_SNRS = (-5.0, 0.0)


def collect(db: str) -> dict:
    """{(dataset, model): {"clean": {seed: v}, (snr, enhancer): {seed: v}}}, v = {uar, ci, delta}."""
    import pandas as pd
    from sqlalchemy import text

    from ser_bench.db.store import Store
    from ser_bench.report.ci import bootstrap_ci, details_by_cell, paired_delta_ci

    store = Store(db)
    df = store.results_frame(superseded=True)
    if df.empty:
        raise SystemExit(f"{db}: no results")
    with store.engine.connect() as conn:
        seeds = dict(conn.execute(text("select id, seed from runs")).fetchall())
    df = df[(df.metric == "uar") & (df.protocol == "mismatched")].copy()
    df["seed"] = df.run_id.map(seeds)
    # a cell recomputed by a later run of the same seed: keep the newest per coordinates and seed
    coords = ["dataset", "ser_model", "enhancer", "test_condition", "test_snr", "fold", "seed"]
    df = df[df.cell_id == df.groupby(coords, dropna=False)["cell_id"].transform("max")]
    details = details_by_cell(store, set(int(c) for c in df.cell_id))
    out: dict = defaultdict(dict)
    for (ds, model, seed), g in df.groupby(["dataset", "ser_model", "seed"]):
        key = (ds, model)
        clean = g[g.test_condition == "clean"]
        if len(clean):
            ci = bootstrap_ci([details[c] for c in clean.cell_id if c in details])
            out[key].setdefault("clean", {})[int(seed)] = {"uar": 100 * clean.value.mean(),
                                                           "ci": [100 * ci[1], 100 * ci[2]] if ci else None}
        noisy_g = g[(g.test_condition == "noisy") & (g.enhancer == "none")]
        for snr, gs in g[g.test_condition.isin(["noisy", "enhanced"])].groupby("test_snr"):
            base = [details[c] for c in noisy_g[noisy_g.test_snr == snr].cell_id if c in details]
            for (cond, enh), ge in gs.groupby(["test_condition", "enhancer"]):
                label = "noisy" if cond == "noisy" else enh
                d = [details[c] for c in ge.cell_id if c in details]
                ci = bootstrap_ci(d)
                delta = paired_delta_ci(base, d) if cond == "enhanced" and base else None
                out[key].setdefault((float(snr), label), {})[int(seed)] = {
                    "uar": 100 * float(ge.value.mean()), "ci": [100 * ci[1], 100 * ci[2]] if ci else None,
                    "folds": int(len(ge)),
                    "delta": None if delta is None else {k: 100 * delta[k] for k in ("delta", "lo", "hi")}}
    del pd
    return out


def promises(res: dict) -> list[dict]:
    """Every wrapper's two promises, per draw and cell."""
    rows = []
    for (ds, model), cells in res.items():
        labels = {lab for k in cells if k != "clean" for lab in [k[1]]}
        snrs = sorted({k[0] for k in cells if k != "clean"})
        for w in sorted(lab for lab in labels if lab.startswith(WRAPPERS)):
            inner = w.split("-", 1)[1]
            for snr in snrs:
                wv, nv, iv = (cells.get((snr, lab), {}) for lab in (w, "noisy", inner))
                for seed in sorted(set(wv) & set(nv)):
                    gain_w = wv[seed]["uar"] - nv[seed]["uar"]
                    row = {"dataset": ds, "model": model, "wrapper": w, "snr": snr, "seed": seed,
                           "gain_pp": round(gain_w, 2), "no_harm": gain_w >= -HARM_PP}
                    if snr in KEEP_SNRS and seed in iv:
                        gain_i = iv[seed]["uar"] - nv[seed]["uar"]
                        row["inner_gain_pp"] = round(gain_i, 2)
                        row["keeps_gain"] = bool(gain_i <= 0 or gain_w >= KEEP_SHARE * gain_i)
                    rows.append(row)
    return rows


def spread(vals: dict) -> dict:
    import numpy as np

    u = np.array([v["uar"] for v in vals.values()])
    widths = [v["ci"][1] - v["ci"][0] for v in vals.values() if v.get("ci")]
    return {"mean": float(u.mean()), "min": float(u.min()), "max": float(u.max()),
            "sd": float(u.std(ddof=1)) if len(u) > 1 else 0.0, "draws": len(u),
            "ci_width_mean": float(np.mean(widths)) if widths else None}


def markdown(res: dict, checks: list[dict]) -> str:
    broken = defaultdict(list)
    for r in checks:
        if not r["no_harm"]:
            broken[(r["dataset"], r["model"], r["wrapper"], r["snr"])].append("h")
        if r.get("keeps_gain") is False:
            broken[(r["dataset"], r["model"], r["wrapper"], r["snr"])].append("g")
    lines = []
    for (ds, model), cells in sorted(res.items()):
        snrs = sorted({k[0] for k in cells if k != "clean"})
        labels = sorted({k[1] for k in cells if k != "clean"}, key=lambda s: (s != "noisy", s.startswith(WRAPPERS), s))
        clean = spread(cells["clean"]) if "clean" in cells else None
        lines.append(f"\n### {ds} · {model}" + (f" (clean {clean['mean']:.1f})" if clean else "") + "\n")
        lines.append("UAR %, mean over draws (min–max); mean 95 % CI width over utterances in the last "
                     "column; `h` = no-harm promise broken in that many draws, `g` = gain promise broken\n")
        lines.append("| condition | " + " | ".join(f"{s:g} dB" for s in snrs) + " | CI width |")
        lines.append("|---|" + "---:|" * (len(snrs) + 1))
        for lab in labels:
            cols, widths = [], []
            for s in snrs:
                v = cells.get((s, lab))
                if not v:
                    cols.append("–")
                    continue
                sp = spread(v)
                mark = broken.get((ds, model, lab, s), [])
                tag = "".join(f" {m}{mark.count(m)}" for m in "hg" if m in mark)
                cols.append(f"{sp['mean']:.1f} ({sp['min']:.1f}–{sp['max']:.1f}){tag}")
                if sp["ci_width_mean"] is not None:
                    widths.append(sp["ci_width_mean"])
            w = f"{sum(widths) / len(widths):.1f}" if widths else "–"
            lines.append(f"| {lab} | " + " | ".join(cols) + f" | {w} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", action="append", required=True)
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args()
    res: dict = {}
    for db in a.db:
        res.update(collect(db))
    checks = promises(res)
    print(markdown(res, checks))
    summary = defaultdict(lambda: {"cells": 0, "no_harm_broken": 0, "keep_gain_checked": 0, "keep_gain_broken": 0})
    for r in checks:
        s = summary[f"{r['dataset']} {r['model']} {r['wrapper']}"]
        s["cells"] += 1
        s["no_harm_broken"] += not r["no_harm"]
        if "keeps_gain" in r:
            s["keep_gain_checked"] += 1
            s["keep_gain_broken"] += not r["keeps_gain"]
    print("\n" + json.dumps(summary, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps({
            "cells": [{"dataset": ds, "model": m, "snr": None if k == "clean" else k[0],
                       "condition": "clean" if k == "clean" else k[1], "per_draw": v,
                       "spread": spread(v)} for (ds, m), cells in res.items() for k, v in cells.items()],
            "promises": checks, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
