"""Report section: corruptions (reverberation, babble, channels...) scored like a robustness benchmark.

For every dataset x protocol x SER model with corrupted cells (``bench run ... --corruption``):

* **scores** per enhancer (``none`` = the SER model on the corrupted speech, the reference):
  CE per corruption family, relative CE, mCE and relative mCE as ROBUSER (after ImageNet-C)
  defines them, with error = 1 - UAR (:func:`ser_bench.corruptions.corruption_scores`), and the
  mean share of the clean-corrupted gap the enhancer recovers;
* **per condition**: UAR (mean over folds, 95 % bootstrap CI over utterances) of the corrupted
  speech and of each enhancer's output, the paired enhanced - corrupted difference and its
  significance, and the share of the gap recovered;
* a plain statement of which enhancers were applied to corruptions they were not built for
  (:attr:`ser_bench.Enhancer.built_for` against :attr:`ser_bench.Corruption.category`): a
  denoiser does not dereverberate, so its reverberation numbers show what it does to speech it
  cannot fix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..corruptions import corruption_scores, family, gap_recovered, parse_chain
from ..protocols import POOL_PREFIX
from .ci import _dedupe, bootstrap_ci, details_by_cell, paired_delta_ci, significance
from .fmt import environment, num

#: Quality measures shown beside each condition's UAR (of ``bench run --quality``), and their format.
QUALITY_SHOWN = {"pesq": ("PESQ", ".2f"), "stoi": ("STOI", ".2f"), "si_sdr": ("SI-SDR", ".1f")}

#: Categories of the built-in corruptions, used when a plugin cannot be loaded to ask.
CATEGORY = {"noise": "additive-noise", "babble": "competing-speech", "reverb": "reverberation", "rir": "reverberation",
            "telephone": "channel", "clipping": "channel", "codec": "channel"}
CATEGORY_TEXT = {"additive-noise": "additive noise", "competing-speech": "competing speech (babble)",
                 "reverberation": "reverberation", "channel": "channel distortion"}


@dataclass
class Cond:
    label: str  # the chain
    family: str
    severity: float | None
    uar: dict[str, dict[str, Any]] = field(default_factory=dict)  # enhancer -> {mean, lo, hi, delta, sig, gap, n}
    #: enhancer -> {measure: mean over utterances} of the run's quality cells (``--quality``), if any
    quality: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Block:
    dataset: str
    protocol: str
    ser_model: str
    clean: dict[str, Any]
    conditions: list[Cond]
    enhancers: list[str]
    scores: dict[str, dict[str, Any]]  # enhancer -> corruption_scores(...) + mean gap
    not_built_for: dict[str, list[str]]  # enhancer -> conditions outside its built_for
    notes: list[str] = field(default_factory=list)


def _registry():
    try:
        from ..plugins import default_registry

        return default_registry()
    except Exception:  # the report must build without the plugins
        return None


def categories(chain: str, registry: Any = None) -> set[str]:
    out = set()
    for s in parse_chain(chain):
        cat = None
        if registry is not None:
            try:
                cat = registry.get("corruption", s.name).category
            except Exception:
                cat = None
        out.add(cat or CATEGORY.get(s.name, "channel"))
    return out


def built_for(enhancer: str, registry: Any = None) -> tuple[str, ...]:
    if registry is not None:
        try:
            return tuple(getattr(registry.get("enhancer", enhancer), "built_for", ("additive-noise",)))
        except Exception:
            pass
    return ("additive-noise",)


def _order(label: str, registry: Any) -> tuple:
    fam, sev, _ = family(label, registry)
    return (fam, sev if sev is not None else -1e9)


def blocks(store: Any, *, n_boot: int = 1000) -> list[Block]:
    """The section's data: one :class:`Block` per dataset x protocol x SER model with corrupted cells."""
    res = store.results_frame()
    if res.empty or "test_corruption" not in res or res.test_corruption.isna().all():
        return []
    qual = res[(res.kind == "quality") & res.test_corruption.notna()]
    res = res[(res.kind == "ser") & (res.metric == "uar")]
    reg = _registry()
    corr = res[res.test_corruption.notna()]
    out = []
    for (ds, proto, model), g in corr.groupby(["dataset", "protocol", "ser_model"], sort=True):
        clean = res[(res.dataset == ds) & (res.protocol == proto) & (res.ser_model == model)
                    & (res.test_condition == "clean") & (res.train_condition == "clean")]
        if proto != "multi-condition":  # matched / mismatched: each corruption against itself
            g = g[g.train_corruption.isna() | (g.train_corruption == g.test_corruption)]
        else:  # multi-condition: the pooled model when the run has one, else the diagonal (the matrix is the raw data)
            is_pool = g.train_corruption.fillna("").str.startswith(POOL_PREFIX)
            g = g[is_pool] if is_pool.any() else g[g.train_corruption == g.test_corruption]
        labels = sorted(set(g.test_corruption), key=lambda lab: _order(lab, reg))
        enhancers = ["none"] + sorted(set(g.enhancer) - {"none"})
        want = set(int(c) for c in g.cell_id) | set(int(c) for c in clean.cell_id)
        details = details_by_cell(store, want)

        def val(sel: pd.DataFrame) -> dict[str, Any] | None:
            if sel.empty:
                return None
            ds_ = [details[int(c)] for c in sorted(sel.cell_id) if int(c) in details]
            ci = bootstrap_ci(ds_, n_boot=n_boot) if ds_ else None
            return {"mean": float(sel.value.mean()), "n_folds": int(len(sel)), "lo": ci[1] if ci else None,
                    "hi": ci[2] if ci else None, "details": ds_, "n_utts": sum(len(d.ids) for d in _dedupe(ds_))}

        c0 = val(clean)
        conds = []
        for lab in labels:
            fam, sev, _ = family(lab, reg)
            cond = Cond(lab, fam, sev)
            gl = g[g.test_corruption == lab]
            base = val(gl[(gl.test_condition == "noisy") & (gl.enhancer == "none")])
            for e in enhancers:
                v = base if e == "none" else val(gl[(gl.test_condition == "enhanced") & (gl.enhancer == e)])
                if v is None:
                    continue
                v = dict(v)
                if e != "none" and base is not None:
                    v["delta"] = paired_delta_ci(base["details"], v["details"], n_boot=n_boot)
                    v["sig"] = significance(v["delta"])
                    v["gap"] = gap_recovered(c0["mean"], base["mean"], v["mean"]) if c0 else None
                cond.uar[e] = v
            q = qual[(qual.dataset == ds) & (qual.test_corruption == lab)]
            for e, qe in q.groupby("enhancer"):
                cond.quality[str(e)] = {m: float(v) for m, v in zip(qe.metric, qe.value) if m in QUALITY_SHOWN}
            conds.append(cond)
        scores = {}
        ref = {(c.family, c.severity): 1 - c.uar["none"]["mean"] for c in conds if "none" in c.uar}
        ref_clean = 1 - c0["mean"] if c0 else None
        for e in enhancers:
            errs = {(c.family, c.severity): 1 - c.uar[e]["mean"] for c in conds if e in c.uar}
            if ref_clean is None or not errs:
                continue
            s = corruption_scores(errs, ref, clean=ref_clean, ref_clean=ref_clean)
            gaps = [c.uar[e].get("gap") for c in conds if e in c.uar and c.uar[e].get("gap") is not None]
            s["gap"] = float(np.mean(gaps)) if gaps else None
            s["n_conditions"] = len(errs)
            scores[e] = s
        nbf = {}
        for e in enhancers[1:]:
            bf = set(built_for(e, reg))
            outside = [c.label for c in conds if e in c.uar and not categories(c.label, reg) <= bf]
            if outside:
                nbf[e] = outside
        notes = []
        if proto == "multi-condition":
            notes.append("Multi-condition: each row's model is fitted on the pool of clean speech and every corruption "
                         "below (each training utterance once per condition), then tested on each."
                         if is_pool.any() else "Multi-condition without a pooled model: each corruption's own model "
                         "(train a, test a); the a -> b matrix is in the results table.")
        if proto != "mismatched":
            notes.append(f"Protocol {proto}: the reference of CE is this protocol's own unenhanced model on each "
                         "corruption (ROBUSER's reference, the clean-trained model, is the mismatched protocol's).")
        out.append(Block(ds, proto, model, c0 or {}, conds, [e for e in enhancers if any(e in c.uar for c in conds)],
                         scores, nbf, notes))
    return out


def _pct(v: float | None, spec: str = ".1f") -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else num(100 * v, spec)


def _ratio(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else num(v, ".3f")


def _not_built_for_notes(not_built_for: dict[str, list[str]], registry: Any) -> list[str]:
    """One sentence per group of enhancers built for the same corruptions and marked on the same conditions."""
    groups: dict[tuple, list[str]] = {}
    for e, labs in not_built_for.items():
        bf = tuple(built_for(e, registry))
        groups.setdefault((bf, tuple(labs)), []).append(e)
    out = []
    for (bf, labs), names in groups.items():
        missing = sorted({x for lab in labs for x in categories(lab, registry)} - set(bf))
        who = names[0] + " was" if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]} were"
        out.append(f"{who} built for {', '.join(CATEGORY_TEXT.get(x, x) for x in bf)}, not for "
                   f"{', '.join(CATEGORY_TEXT.get(x, x) for x in missing)}: the {len(labs)} condition(s) marked † "
                   f"({', '.join(labs)}) show what {'it does' if len(names) == 1 else 'they do'} to speech "
                   f"{'it was' if len(names) == 1 else 'they were'} not made to fix")
    return out


def render_block(b: Block) -> dict[str, Any]:
    """Plain rows for the template (and for markdown)."""
    fams = list(dict.fromkeys(c.family for c in b.conditions))
    score_rows = []
    for e in b.enhancers:
        s = b.scores.get(e)
        if not s:
            continue
        have = [f for f in fams if s["ce"].get(f) is not None]
        part = f" ({len(have)} of {len(fams)} families)" if len(have) < len(fams) else ""  # not comparable then
        rhave = [f for f in fams if s["rce"].get(f) is not None]
        rpart = f" ({len(rhave)} of {len(fams)} families)" if len(rhave) < len(fams) else ""
        score_rows.append({"enhancer": e, "ce": [_ratio(s["ce"].get(f)) for f in fams],
                           "rce": [_ratio(s["rce"].get(f)) for f in fams], "mce": _ratio(s["mce"]) + part,
                           "rmce": _ratio(s["rmce"]) + rpart, "gap": _pct(s.get("gap"), ".0f") if e != "none" else "",
                           "n": s["n_conditions"]})
    cond_rows = []
    for c in b.conditions:
        for e in b.enhancers:
            v = c.uar.get(e)
            if v is None:
                continue
            d = v.get("delta")
            cond_rows.append({
                "condition": c.label, "enhancer": e, "uar": _pct(v["mean"]),
                "ci": f"[{_pct(v['lo'])}, {_pct(v['hi'])}]" if v.get("lo") is not None else "",
                "delta": (num(100 * d["delta"], "+.1f") + f" [{num(100 * d['lo'], '+.1f')}, {num(100 * d['hi'], '+.1f')}]")
                if d else "",
                "sig": v.get("sig", ""), "gap": _pct(v.get("gap"), ".0f") if v.get("gap") is not None else "",
                "outside": e in b.not_built_for and c.label in b.not_built_for[e], "n_folds": v["n_folds"],
                "quality": " · ".join(f"{QUALITY_SHOWN[m][0]} {num(q, QUALITY_SHOWN[m][1])}"
                                      for m, q in c.quality.get(e, {}).items()),
            })
    nbf = _not_built_for_notes(b.not_built_for, _registry())
    return {"title": f"{b.dataset} · {b.protocol} · {b.ser_model}", "families": fams, "scores": score_rows,
            "conditions": cond_rows,
            "clean": (f"{_pct(b.clean.get('mean'))} [{_pct(b.clean.get('lo'))}, {_pct(b.clean.get('hi'))}]"
                      if b.clean else "–"),
            "not_built_for": nbf, "notes": b.notes}


def section(store: Any) -> dict[str, str] | None:
    bl = blocks(store)
    if not bl:
        return None
    html = environment().get_template("corruptions.html").render(blocks=[render_block(b) for b in bl])
    return {"title": "Corruptions: reverberation, babble, channels (CE / mCE)", "html": html}


def markdown(store: Any) -> str:
    """The section as markdown tables (closing notes, `benchmarks/corruptions_summary.py`)."""
    lines = []
    for b in blocks(store):
        r = render_block(b)
        lines += [f"### {r['title']} (clean UAR {r['clean']})", ""]
        fams = r["families"]
        lines.append("| enhancer | " + " | ".join(f"CE {f}" for f in fams) + " | mCE | rel. mCE | gap recovered % |")
        lines.append("|---" * (len(fams) + 4) + "|")
        for s in r["scores"]:
            lines.append(f"| {s['enhancer']} | " + " | ".join(s["ce"]) + f" | {s['mce']} | {s['rmce']} | {s['gap']} |")
        lines += ["", "| condition | enhancer | UAR % [95% CI] | Δ vs corrupted [CI] | sig | gap recovered % | quality |",
                  "|---|---|---|---|---|---|---|"]
        for c in r["conditions"]:
            mark = " †" if c["outside"] else ""
            lines.append(f"| {c['condition']} | {c['enhancer']}{mark} | {c['uar']} {c['ci']} | {c['delta']} | "
                         f"{c['sig']} | {c['gap']} | {c['quality']} |")
        lines += [""] + [f"† {n}." for n in r["not_built_for"]] + r["notes"] + [""]
    return "\n".join(lines)


def compact(store: Any, *, n_boot: int = 1000) -> str:
    """One table per dataset x protocol: each enhancer's UAR change against the corrupted input, one
    value per SER model in a cell (``eGeMAPS / ComParE``), **bold** where significant; the last row
    is each enhancer's mCE. The README's corruption table."""
    by: dict[tuple[str, str], list[Block]] = {}
    for b in blocks(store, n_boot=n_boot):
        by.setdefault((b.dataset, b.protocol), []).append(b)
    lines = []
    for (ds, proto), bl in by.items():
        models = [b.ser_model for b in bl]
        ens = [e for e in dict.fromkeys(e for b in bl for e in b.enhancers) if e != "none"]
        labels = list(dict.fromkeys(c.label for b in bl for c in b.conditions))
        conds = [{c.label: c for c in b.conditions} for b in bl]

        def cell(c: Cond | None, e: str) -> str:
            v = c.uar.get(e) if c is not None else None
            if not v or not v.get("delta"):
                return "–"
            s = num(100 * v["delta"]["delta"], "+.1f")
            return f"**{s}**" if v.get("sig") in ("better", "worse") else s

        def join(vals: list[str]) -> str:
            return " / ".join(vals)

        clean = join([_pct(b.clean.get("mean")) if b.clean else "–" for b in bl])
        lines += [f"### {ds} · {proto} · {' / '.join(models)} (clean UAR {clean})", "",
                  "| condition | corrupted UAR | " + " | ".join(ens) + " |", "|---|---:|" + "---:|" * len(ens)]
        for lab in labels:
            cs = [m.get(lab) for m in conds]
            base = join([_pct(c.uar["none"]["mean"]) if c is not None and "none" in c.uar else "–" for c in cs])
            lines.append(f"| {lab} | {base} | " + " | ".join(join([cell(c, e) for c in cs]) for e in ens) + " |")
        mce = [join([_ratio(b.scores.get(e, {}).get("mce")) if b.scores.get(e) else "–" for b in bl]) for e in ens]
        lines += [f"| mCE (none = 1) | | " + " | ".join(mce) + " |", ""]
    return "\n".join(lines)


def as_json(store: Any) -> str:
    return json.dumps([{k: v for k, v in render_block(b).items()} for b in blocks(store)], indent=1)
