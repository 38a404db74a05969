"""The paper view's notes: whether our numbers are comparable with the paper's, what differs in
the data and set-up (:func:`comparability`, :func:`data_notes`), and the facts behind them read
from the store (:func:`corpus_facts`, :func:`detect_dataset_notes`, :func:`enhancer_descriptions`).
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from .paper_types import CorpusFacts

#: RECOLA labels come every 40 ms (test duration from the stored frame counts).
HOP_S = 0.04


# ----------------------------------------------------------------------------- comparability


def comparability(paper: dict, corpus: str, dataset: str, facts: CorpusFacts | None) -> list[str]:
    """Why our numbers on ``dataset`` are not comparable with the paper's on ``corpus`` ([] if they are)."""
    why: list[str] = []
    info = paper["datasets"].get(dataset, {})
    if info.get("stand_in"):
        why.append(f"{dataset} is a different corpus standing in for {corpus}, so absolute numbers differ; "
                   "compare the trends and the gap recovered.")
    spec = paper["corpora"].get(corpus, {})
    facts = facts or CorpusFacts()
    if facts.classes is not None and spec.get("classes"):
        ours, theirs = sorted(facts.classes), sorted(spec["classes"])
        if ours != theirs:
            why.append(f"ours has {len(ours)} classes ({', '.join(ours)}), the paper's {corpus} {len(theirs)} "
                       f"({', '.join(theirs)}): chance level is {100 / max(1, len(ours)):.1f} % against "
                       f"{100 / len(theirs):.1f} %, so the UARs are not on the same scale.")
    if spec.get("utterances") and facts.n_utterances is not None and facts.n_utterances < 0.5 * spec["utterances"]:
        why.append(f"ours has {facts.n_utterances} utterances from {facts.n_speakers} speakers, the paper's {corpus} "
                   f"{spec['utterances']} from {spec.get('speakers', '?')}: a subset, or another corpus in "
                   f"{corpus}'s layout.")
    if spec.get("test_recordings") and facts.test_recordings is not None:
        n, sec = facts.test_recordings, facts.test_seconds or 0.0
        if n != spec["test_recordings"] or sec < 0.5 * spec["test_seconds"]:
            why.append(f"ours is tested on {n} recording(s), {sec / 60:.1f} min; {corpus}'s test partition has "
                       f"{spec['test_recordings']} recordings, {spec['test_seconds'] / 60:.0f} min: this is "
                       f"another corpus in {corpus}'s layout (e.g. a synthetic one).")
    return why


def data_notes(paper: dict, corpus: str, dataset: str, facts: CorpusFacts | None, noise: str,
               enhancers: list[str], snrs: list[float], plugin_notes: list[str],
               enhancer_descriptions: dict[str, str] | None = None,
               paper_snrs: list[float] | None = None) -> list[str]:  # fmt: skip
    """What differs between our data and set-up and the paper's, for one table."""
    notes: list[str] = []
    info = paper["datasets"].get(dataset, {})
    if info.get("note"):
        notes.append(info["note"])
    spec = paper["corpora"].get(corpus, {})
    f = facts or CorpusFacts()
    if f.n_utterances is not None and spec.get("utterances"):
        cls = f", classes {', '.join(sorted(f.classes))}" if f.classes else ""
        notes.append(f"Data: ours {f.n_utterances} utterances from {f.n_speakers} speakers{cls}; the paper's "
                     f"{corpus}: {spec['utterances']} utterances, {spec.get('speakers', '?')} speakers.")
    if f.test_recordings is not None and spec.get("test_recordings"):
        notes.append(f"Data: ours tested on {f.test_recordings} recording(s) ({(f.test_seconds or 0) / 60:.1f} min); "
                     f"the paper on {corpus}'s {spec['test_recordings']} test recordings "
                     f"({spec['test_seconds'] / 60:.0f} min).")
    notes.extend(plugin_notes)
    src = paper["source"]
    if noise not in ("-", "audioset"):
        notes.append(f"Noise: ours mixes clips of the '{noise}' noise source (its test part); "
                     f"the paper mixed {src['noise']}.")
    comparable = set(paper.get("comparable_enhancers", []))
    desc = enhancer_descriptions or {}
    for e in enhancers:
        d = f" ({desc[e]})" if desc.get(e) else ""
        if e in comparable:
            notes.append(f"Enhancer {e}{d}: our reimplementation of the paper's ResNet; the checkpoint's size and "
                         "training data can differ from the paper's (see the checkpoint's model card).")
        else:
            notes.append(f"Enhancer {e}{d}: not the paper's; its rows are set against the paper's enhanced "
                         "(ResNet) numbers as a reference.")
    paper_snrs = paper_snrs or [float(s) for s in src["snrs_db"]]
    if snrs and sorted(snrs) != paper_snrs:
        notes.append(f"SNRs: ours {', '.join(f'{s:g}' for s in snrs)} dB; the paper's "
                     f"{', '.join(f'{s:g}' for s in paper_snrs)} dB.")
    return notes


# ----------------------------------------------------------------------------- facts from the store


def corpus_facts(store: Any, results: pd.DataFrame, datasets: list[str]) -> dict[str, CorpusFacts]:
    """Classes, utterances, speakers (and for regression the test recordings and duration) of our
    latest clean cells per dataset, read from their stored predictions."""
    cells = store.cells_frame()
    out: dict[str, CorpusFacts] = {}
    if cells.empty:
        return out
    cells = cells[(cells.kind == "ser") & (cells.status == "done") & (cells.train_condition == "clean")
                  & (cells.test_condition == "clean")]  # fmt: skip
    for ds in datasets:
        c = cells[cells.dataset == ds]
        if c.empty:
            continue
        c = c[c.run_id == c.run_id.max()]
        c = c[c.ser_model == sorted(set(c.ser_model))[0]]
        classes: set[str] = set()
        utts: set[str] = set()
        frames = 0
        regression = False
        for r in c.itertuples():
            try:
                rows = json.loads(r.predictions_json or "[]")
            except (TypeError, ValueError):
                continue
            for row in rows:
                if not isinstance(row, list) or len(row) != 3:
                    continue
                utts.add(str(row[0]))
                if isinstance(row[1], str):
                    classes.add(row[1])
                elif isinstance(row[1], (int, float)):
                    regression = True
                    frames += int(row[1])
        if not utts:
            continue
        if regression:
            out[ds] = CorpusFacts(test_recordings=len(utts), test_seconds=frames * HOP_S)
        else:
            out[ds] = CorpusFacts(classes=sorted(classes), n_utterances=len(utts), n_speakers=len(set(c.fold)))
    return out


def detect_dataset_notes(runs: pd.DataFrame, datasets: list[str]) -> dict[str, list[str]]:
    """Each dataset plugin's ``notes`` (e.g. "possibly degraded copy") for its latest run's options.

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
            try:
                plugin = reg.create("dataset", ds, cfg.get("options", {}).get(ds, {}))
                plugin.utterances()
                out[ds] = [f"{ds}: {plugin.notes}"] if getattr(plugin, "notes", "") else []
            except Exception:  # the corpus is elsewhere, or the plugin is missing: no note
                out[ds] = []
            break
    return out


def enhancer_descriptions(names: set[str]) -> dict[str, str]:
    from ..plugins import default_registry

    reg = default_registry()
    out = {}
    for n in names:
        try:
            out[n] = reg.entry("enhancer", n).description
        except Exception:  # an enhancer no longer installed
            pass
    return out
