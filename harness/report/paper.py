"""The paper view: our results in the layout of the seed paper's Tables 2-6, beside its numbers.

The published numbers are transcribed in ``harness/data/paper_tables.json`` together with their
source; values the transcription lacks are ``null`` and shown as "n/a", never guessed. For each
paper table and each of our datasets that plays its corpus (RAVDESS stands in for eNTERFACE),
the view shows per SER model (feature set):

* ours, noisy: the clean baseline in the "clean" column, then noisy speech per SNR;
* the paper's clean / noisy numbers, and the difference ours - paper;
* ours, enhanced, per enhancer, and its gain over noisy (enhanced - noisy);
* the paper's enhanced numbers, and ours - paper for enhancers that reproduce the paper's
  (``comparable_enhancers``: rescnn); other enhancers get no difference, only a note.

Data differences (a stand-in corpus, a copy the dataset plugin flags as degraded, unverified
table numbers) are listed above each table. :func:`section` plugs the view into
``bench report`` (see ``harness.report.build.EXTRA_SECTION_MODULES``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

PAPER_TABLES = Path(__file__).resolve().parents[1] / "data" / "paper_tables.json"
#: Columns that identify a result apart from its run (for keeping the latest run's value).
COORDS = ["dataset", "ser_model", "enhancer", "noise", "protocol", "train_condition", "train_snr",
          "test_condition", "test_snr", "fold", "metric"]  # fmt: skip


@lru_cache(maxsize=4)
def load_paper_tables(path: str | Path = PAPER_TABLES) -> dict[str, Any]:
    """The transcribed tables (see the file's ``source`` for what is and is not transcribed)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass
class Row:
    model: str  # feature-set label, e.g. "eGeMAPS"
    what: str  # e.g. "ours · noisy", "paper · clean / noisy", "Δ ours − paper"
    cells: list[str]
    kind: str = "ours"  # ours | paper | delta | gain (for styling)


@dataclass
class PaperTable:
    id: str
    title: str
    paper_label: str
    dataset: str
    noise: str
    protocol: str
    metric: str
    columns: list[str]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


def _fmt(v: float | None, metric: str, missing: str = "–") -> str:
    """A value in the paper's units; ``missing`` for none ("–": we did not run it; "n/a": the
    paper's number is not transcribed)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return missing
    return f"{v:.1f}" if metric == "uar" else f"{v:.3f}"


def _fmt_delta(a: float | None, b: float | None, metric: str) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return ""
    d = a - b
    return f"{d:+.1f}" if metric == "uar" else f"{d:+.3f}"


def _scale(metric: str) -> float:
    """Our stored values are fractions; the paper's UARs are percent, its CCCs raw."""
    return 100.0 if metric == "uar" else 1.0


def latest(results: pd.DataFrame) -> pd.DataFrame:
    """One value per result coordinate: the one from the most recent run."""
    if results.empty:
        return results
    r = results.copy()
    for c in ("train_snr", "test_snr"):
        r[c + "_k"] = r[c].fillna(-999.0)
    keys = [c + "_k" if c in ("train_snr", "test_snr") else c for c in COORDS]
    r = r.sort_values("run_id").drop_duplicates(keys, keep="last")
    return r.drop(columns=["train_snr_k", "test_snr_k"])


def _mean(df: pd.DataFrame, metric: str) -> float | None:
    return float(df["value"].mean()) * _scale(metric) if not df.empty else None


def _paper_value(values: dict, model: str, cond: str, snr: float | None) -> float | None:
    v = values.get(model, {})
    if cond == "clean":
        return v.get("clean")
    return v.get(cond, {}).get(f"{snr:g}") if snr is not None else None


def build_table(spec: dict, dataset: str, noise: str, res: pd.DataFrame, paper: dict) -> PaperTable:
    """One paper table for one of our datasets and noise sources, from deduplicated results."""
    metric, proto = spec["metric"], spec["protocol"]
    d = res[(res.dataset == dataset) & (res.metric == metric)]
    clean_all = d[(d.train_condition == "clean") & (d.test_condition == "clean")]
    clean = clean_all[clean_all.protocol == proto]
    if clean.empty:  # the clean baseline does not depend on the protocol
        clean = clean_all
    noisy = d[(d.protocol == proto) & (d.noise == noise)]
    snrs = sorted(set(noisy.test_snr.dropna()) | {float(s) for s in (spec.get("snrs") or [])})
    enhancers = sorted(set(noisy.enhancer) - {"none"})
    columns = ["clean"] + [f"{s:g} dB" for s in snrs]
    values = spec.get("values", {})
    comparable = set(spec.get("comparable_enhancers", []))
    rows: list[Row] = []
    for model, label in spec["ser_models"].items():
        if model not in set(d.ser_model):
            continue
        ours_clean = _mean(clean[clean.ser_model == model], metric)
        nz = noisy[(noisy.ser_model == model) & (noisy.test_condition == "noisy") & (noisy.enhancer == "none")]
        ours_noisy = [_mean(nz[nz.test_snr == s], metric) for s in snrs]
        paper_clean = _paper_value(values, model, "clean", None)
        paper_noisy = [_paper_value(values, model, "noisy", s) for s in snrs]
        rows.append(Row(label, "ours · clean / noisy", [_fmt(v, metric) for v in [ours_clean, *ours_noisy]]))
        rows.append(Row(label, "paper · clean / noisy", [_fmt(v, metric, "n/a") for v in [paper_clean, *paper_noisy]],
                        "paper"))  # fmt: skip
        rows.append(Row(label, "Δ ours − paper",
                        [_fmt_delta(a, b, metric) for a, b in zip([ours_clean, *ours_noisy], [paper_clean, *paper_noisy])],
                        "delta"))  # fmt: skip
        paper_enh = [_paper_value(values, model, "enhanced", s) for s in snrs]
        for enh in enhancers:
            en = noisy[(noisy.ser_model == model) & (noisy.test_condition == "enhanced") & (noisy.enhancer == enh)]
            ours_enh = [_mean(en[en.test_snr == s], metric) for s in snrs]
            rows.append(Row(label, f"ours · enhanced ({enh})", ["", *[_fmt(v, metric) for v in ours_enh]]))
            rows.append(Row(label, f"gain {enh} − noisy (ours)",
                            ["", *[_fmt_delta(a, b, metric) for a, b in zip(ours_enh, ours_noisy)]], "gain"))
            if enh in comparable:
                rows.append(Row(label, f"Δ ours ({enh}) − paper",
                                ["", *[_fmt_delta(a, b, metric) for a, b in zip(ours_enh, paper_enh)]], "delta"))
        rows.append(Row(label, f"paper · enhanced ({spec.get('paper_enhancer', 'paper')})",
                        ["", *[_fmt(v, metric, "n/a") for v in paper_enh]], "paper"))  # fmt: skip
    used = pd.concat([clean[clean.ser_model.isin(list(spec["ser_models"]))], noisy])
    title = spec["title"]
    return PaperTable(id=spec["id"], title=title, paper_label=spec.get("paper_label", spec["id"]), dataset=dataset,
                      noise=noise, protocol=proto, metric=metric, columns=columns, rows=rows,
                      runs=[{"run_id": int(r)} for r in sorted(set(used.run_id))])


def table_notes(spec: dict, dataset: str, paper: dict, dataset_notes: dict[str, list[str]],
                enhancers: list[str]) -> list[str]:  # fmt: skip
    """What differs between our data/setup and the paper's for this table."""
    notes: list[str] = []
    ds_info = paper.get("datasets", {}).get(dataset, {})
    if ds_info.get("stand_in"):
        notes.append(f"Stand-in corpus: {ds_info.get('note') or dataset + ' replaces ' + spec['paper_corpus']}")
    notes.extend(dataset_notes.get(dataset, []))
    if not spec.get("number_verified", False):
        notes.append(f"{spec.get('paper_label', spec['id'])}: the table number and layout are this project's "
                     "reconstruction, not checked against the paper.")
    if spec.get("note"):
        notes.append(spec["note"])
    elif any(v.get("clean") is None or not v.get("noisy") for v in spec.get("values", {}).values()):
        notes.append("n/a = the paper's number is not transcribed in harness/data/paper_tables.json (see above).")
    comparable = set(spec.get("comparable_enhancers", []))
    other = [e for e in enhancers if e not in comparable]
    if other:
        notes.append(f"Enhancer(s) {', '.join(other)} are not the paper's ({spec.get('paper_enhancer', '?')}): "
                     "their enhanced rows are not differenced against the paper's enhanced numbers.")
    return notes


def paper_view(results: pd.DataFrame, runs: pd.DataFrame | None = None, paper: dict | None = None,
               dataset_notes: dict[str, list[str]] | None = None) -> list[PaperTable]:  # fmt: skip
    """Every paper table for which we have results, in the paper's order."""
    paper = paper or load_paper_tables()
    dataset_notes = dataset_notes or {}
    if results is None or results.empty:
        return []
    res = results[results.kind == "ser"] if "kind" in results else results
    res = latest(res)
    out: list[PaperTable] = []
    for spec in paper["tables"]:
        # a clean-protocol run is the mismatched tables' clean column (train clean, test clean)
        protocols = {spec["protocol"]} | ({"clean"} if spec["protocol"] == "mismatched" else set())
        for ds in spec["datasets"]:
            d = res[(res.dataset == ds) & res.protocol.isin(protocols) & (res.metric == spec["metric"])
                    & res.ser_model.isin(list(spec["ser_models"]))]  # fmt: skip
            if d.empty:
                continue
            noises = sorted(set(d.noise) - {"-"}) or ["-"]
            for noise in noises:
                t = build_table(spec, ds, noise, res, paper)
                enh = sorted(set(d[d.noise == noise].enhancer) - {"none"})
                t.notes = table_notes(spec, ds, paper, dataset_notes, enh)
                if runs is not None and not runs.empty:
                    info = runs.set_index("id")
                    t.runs = [{"run_id": r["run_id"], "wall_s": _float(info.at[r["run_id"], "wall_s"]),
                               "status": str(info.at[r["run_id"], "status"])}
                              for r in t.runs if r["run_id"] in info.index]  # fmt: skip
                out.append(t)
    return out


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def detect_dataset_notes(runs: pd.DataFrame, datasets: list[str]) -> dict[str, list[str]]:
    """Each dataset plugin's ``notes`` (e.g. "degraded copy") for the options of its latest run.

    Best effort: lists the corpus again (header reads only); a corpus that is not on this
    machine, or a plugin that fails, just gives no note.
    """
    from ..plugins import default_registry

    out: dict[str, list[str]] = {}
    if runs is None or runs.empty:
        return out
    reg = default_registry()
    for ds in datasets:
        for _, run in runs.sort_values("id", ascending=False).iterrows():
            try:
                cfg = json.loads(run["config_json"])
            except (TypeError, ValueError):
                continue
            if ds not in cfg.get("datasets", []):
                continue
            opts = cfg.get("options", {}).get(ds, {})
            notes = []
            try:
                plugin = reg.create("dataset", ds, opts)
                utts = plugin.utterances()
                classes = sorted({u.label for u in utts if isinstance(u.label, str)})
                desc = f"{ds}: {len(utts)} utterances, {len({u.speaker for u in utts})} speakers"
                if classes:
                    desc += f", classes {', '.join(classes)}"
                notes.append(f"Data used ({desc}; run {run['id']} options {json.dumps(opts, sort_keys=True)}).")
                if getattr(plugin, "notes", ""):
                    notes.append(f"{ds}: {plugin.notes}")
            except Exception:  # the corpus is elsewhere, or the plugin is missing: no note
                pass
            out[ds] = notes
            break
    return out


def render(tables: list[PaperTable], paper: dict | None = None) -> str:
    """HTML for the tables (Jinja2, autoescaped)."""
    from .fmt import environment

    paper = paper or load_paper_tables()
    env = environment()  # autoescaped; no "-0.0" in the cells
    return env.get_template("paper.html").render(tables=tables, source=paper.get("source", {}))


def section(store: Any) -> dict[str, str] | None:
    """The report section (``harness.report.build`` calls it): None when no paper corpus has results."""
    results = store.results_frame()
    if results.empty:
        return None
    runs = store.runs_frame()
    paper = load_paper_tables()
    wanted = {ds for spec in paper["tables"] for ds in spec["datasets"]}
    present = sorted(wanted & set(results.dataset))
    if not present:
        return None
    tables = paper_view(results, runs, paper, detect_dataset_notes(runs, present))
    if not tables:
        return None
    return {"title": "Paper view: our results beside Triantafyllopoulos et al. (Interspeech 2019)",
            "html": render(tables, paper)}
