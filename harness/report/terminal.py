"""The results of runs as a compact terminal table (``bench run``, ``bench paper``, ``bench runs show
N --table``) or as JSON (``--json``).

One table per dataset x protocol x noise source, one row per SER model and enhancer: the ``none``
row holds the clean and the noisy scores, an enhancer's row its enhanced scores; per SNR the mean
over folds, its 95 % bootstrap CI over utterances and, on enhanced scores, ``+`` / ``-`` when
the paired enhanced - noisy difference is significant. The numbers are the HTML leaderboard's
(:func:`ser_bench.report.build.leaderboard`, :func:`ser_bench.report.ci.annotate`), restricted to
the runs asked for.

A run's cells include those it found stored by an earlier run (a rerun computes only what is
missing), and the registry records each cell under the run that computed it. So a run's results
are read back by its configuration: the cells at its coordinates (datasets, models, enhancers,
noise sources, SNRs, its folds' scheme), the run's own first, else the newest stored.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..errors import ConfigError
from .fmt import num

#: the coordinates of one result (a cell's metric): one value each in a run's table
COORDS = ["dataset", "ser_model", "enhancer", "noise", "protocol", "train_condition", "train_snr", "test_condition",
          "test_snr", "fold", "metric"]
#: shown as a percentage (else as a plain number with 3 decimals: CCC)
PERCENT = {"uar", "accuracy"}
MARK = {"better": "+", "worse": "-"}
LEGEND = ("Mean over folds [95 % CI, bootstrap over utterances]. Row none: clean and noisy; other rows: enhanced.\n"
          "+ / -: enhanced significantly better / worse than noisy (paired bootstrap, 5 %).")


def _fold_matches(cfg: dict[str, Any]) -> re.Pattern[str]:
    cv = cfg.get("cv", "auto")
    if cv == "loso":
        return re.compile(r"spk:.*")
    if cv == "partition":
        return re.compile(r"partition")
    if cv == "group-kfold":
        return re.compile(rf"group\d+of{int(cfg.get('cv_folds', 5))}")
    return re.compile(r"spk:.*|partition")


def _in_config(res: pd.DataFrame, cfg: dict[str, Any]) -> pd.Series:
    """Rows of ``res`` at the coordinates of a run with config ``cfg`` (its config_json)."""
    keep = pd.Series(True, index=res.index)
    if "protocol" in cfg:
        keep &= res.protocol == cfg["protocol"]
    for col, field, extra in (("dataset", "datasets", ()), ("ser_model", "ser_models", ()),
                              ("enhancer", "enhancers", ("none",)), ("noise", "noise_sources", ("-",))):
        if cfg.get(field):
            keep &= res[col].isin([*cfg[field], *extra])
    snrs = cfg.get("snrs") or []
    test = [float(s) for s in (cfg.get("test_snrs") or snrs)]
    train = [float(s) for s in (cfg.get("train_snrs") or snrs)]
    if test:
        keep &= res.test_snr.isna() | res.test_snr.isin(test)
    if train:
        keep &= res.train_snr.isna() | res.train_snr.isin(train)
    keep &= res.fold.astype(str).str.fullmatch(_fold_matches(cfg))
    return keep


def run_results(store: Any, run_ids: Sequence[int]) -> pd.DataFrame:
    """The SER results of runs ``run_ids`` (see the module docstring), one row per cell and metric."""
    runs = store.runs_frame()
    res = store.results_frame(superseded=True)
    missing = [r for r in run_ids if runs.empty or not (runs.id == r).any()]
    if missing:
        raise ConfigError(f"no run {missing[0]} in {store.url}; `bench runs list` shows the runs")
    if res.empty:
        return res
    res = res[res.kind == "ser"]
    parts = []
    for rid in run_ids:
        try:
            cfg = json.loads(runs.loc[runs.id == rid, "config_json"].iloc[0] or "{}")
        except (TypeError, ValueError):
            cfg = {}
        d = res[_in_config(res, cfg)] if cfg else res[res.run_id == rid]
        d = (d.assign(_own=(d.run_id == rid).astype(int)).sort_values(["_own", "cell_id"], kind="stable")
             .drop_duplicates(COORDS, keep="last").drop(columns="_own"))
        parts.append(d)
    out = pd.concat(parts) if parts else res.iloc[:0]
    return out.drop_duplicates(["cell_id", "metric"]).sort_values(["cell_id", "metric"]).reset_index(drop=True)


def tables(store: Any, run_ids: Sequence[int], *, n_boot: int | None = None) -> list[Any]:
    """The leaderboard tables of runs ``run_ids`` (CIs and significance filled in)."""
    from . import ci
    from .build import leaderboard

    res = run_results(store, run_ids)
    out = []
    if res.empty:
        return out
    for (ds, proto), g in res.groupby(["dataset", "protocol"], sort=True):
        for noise in sorted(set(g.noise) - {"-"}) or ["-"]:
            out.append(leaderboard(res, ds, proto, noise))
    ci.annotate(out, store, n_boot=n_boot or ci.N_BOOT)
    return out


def _rows(t: Any) -> list[dict[str, Any]]:
    """A leaderboard's rows as (model, enhancer, clean value, one value per SNR)."""
    out = []
    snr_cols = [(j, g, sub) for j, (g, sub) in enumerate(t.columns) if j > 0]
    for r in t.rows:
        model, enh = r["label"]
        want = "noisy" if enh == "none" else "enhanced"
        values = [r["cells"][j] for j, _, sub in snr_cols if sub == want]
        out.append({"ser_model": model, "enhancer": enh, "condition": want,
                    "clean": r["cells"][0] if enh == "none" else None, "values": values})
    return out


def _value(v: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"mean": _finite(v.mean), "std": _finite(v.std), "n_folds": v.n_folds,
            "ci": [v.ci[0], v.ci[1]] if v.ci else None, "n_utterances": v.n_utts or None,
            "sig": v.sig or None, "delta": v.delta, "runs": [int(r) for r in v.runs]}


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def as_dict(tabs: list[Any], run_ids: Sequence[int]) -> dict[str, Any]:
    """``--json``: every table with its rows; values as fractions (UAR 0.673), CIs as [lo, hi]."""
    out = []
    for t in tabs:
        ds, proto, noise = _split_title(t)
        out.append({"dataset": ds, "protocol": proto, "noise": noise, "metric": t.metric, "snrs": t.snrs,
                    "rows": [{**{k: r[k] for k in ("ser_model", "enhancer", "condition")},
                              "clean": _value(r["clean"]),
                              "by_snr": [{"snr": s, **(_value(v) or {"mean": None})} for s, v in zip(t.snrs, r["values"])]}
                             for r in _rows(t)]})
    return {"runs": [int(r) for r in run_ids], "significance": "paired bootstrap of enhanced - noisy over utterances, "
            "95 % interval excludes 0", "tables": out}


def _split_title(t: Any) -> tuple[str, str, str]:
    ds, proto, noise = (t.title.split(" · ") + ["", "", ""])[:3]
    return ds, proto, noise.removeprefix("noise ")


def _fmt(v: Any, metric: str) -> str:
    if v is None or v.mean is None or (isinstance(v.mean, float) and math.isnan(v.mean)):
        return ""
    pct = metric in PERCENT
    f = (lambda x: num(100 * x, ".1f")) if pct else (lambda x: num(x, ".3f"))
    text = f(v.mean) + MARK.get(v.sig, " " if v.ci else "")  # a blank mark keeps the CIs aligned
    if v.ci:
        text += f" [{f(v.ci[0])},{f(v.ci[1])}]"
    return text


def render(tabs: list[Any]) -> str:
    """The tables as aligned plain text, with one legend line at the end."""
    if not tabs:
        return "no results to show (no SER cell of these runs is stored)"
    blocks = []
    for t in tabs:
        unit = f"{t.metric.upper()}{' %' if t.metric in PERCENT else ''}"
        head = ["SER model", "enhancer", "clean", *[f"{s:g} dB" for s in t.snrs]]
        body = [[r["ser_model"], r["enhancer"], _fmt(r["clean"], t.metric), *[_fmt(v, t.metric) for v in r["values"]]]
                for r in _rows(t)]
        widths = [max(len(row[k]) for row in [head, *body]) for k in range(len(head))]
        lines = [f"{t.title} · {unit}" + (" (train SNR = test SNR; `bench report` has the full grid)"
                                           if " · multi-snr" in t.title else "")]
        for row in [head, *body]:
            lines.append("  " + "  ".join(c.ljust(w) if k < 2 else c.rjust(w)
                                          for k, (c, w) in enumerate(zip(row, widths))).rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" + LEGEND
