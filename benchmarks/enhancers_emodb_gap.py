"""UAR per SNR for every enhancer, and the share of the clean - noisy gap each one recovers.

Reads a results database (from ``bench run --suite benchmarks/emodb_mismatched.toml ...``) and
prints, per SER model, one Markdown table: UAR % (mean over the LOSO folds, as in ``bench
report``) with its bootstrap 95 % CI over utterances, per SNR, for noisy and every enhancer;
then the share of the clean - noisy gap each enhancer recovers, ``(enh - noisy) / (clean -
noisy)``, at every SNR (the issue's headline number is the 0 dB one). For every ``guarded-X``
stored beside ``X``, it also checks the guard's two promises (issue 14): UAR >= noisy - 1 pp at
every SNR, and >= 80 % of X's UAR gain over noisy kept at -5 and 0 dB.

    python benchmarks/enhancers_emodb_gap.py --db /work/wt-12a-runs.db [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ORDER = ["none", "wiener", "rescnn", "deepfilternet", "rnnoise", "spectral-gating"]


def collect(db: str, dataset: str, protocol: str, noise: str) -> dict:
    from ser_bench.db.store import Store
    from ser_bench.report.build import leaderboard
    from ser_bench.report.ci import annotate

    store = Store(db)
    df = store.results_frame()
    if df.empty:
        raise SystemExit(f"{db}: no results")
    table = leaderboard(df, dataset, protocol, noise)
    annotate([table], store)
    out: dict = {}
    for row in table.rows:
        model, enh = row["label"]
        m = out.setdefault(model, {"clean": None, "noisy": {}, "enhanced": {}})
        for (group, sub), v in zip(table.columns, row["cells"]):
            if v is None:
                continue
            val = {"uar": 100 * v.mean, "ci": [100 * c for c in v.ci] if v.ci else None, "folds": v.n_folds,
                   "sig": v.sig}
            if group == "clean":
                m["clean"] = val
            elif sub == "noisy":
                m["noisy"][group] = val
            else:
                m["enhanced"].setdefault(enh, {})[group] = val
    return out


def fmt(v: dict | None) -> str:
    if v is None:
        return "–"
    ci = f" [{v['ci'][0]:.1f}, {v['ci'][1]:.1f}]" if v.get("ci") else ""
    sig = f" ({v['sig']})" if v.get("sig") else ""
    return f"{v['uar']:.1f}{ci}{sig}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--dataset", default="emodb")
    ap.add_argument("--protocol", default="mismatched")
    ap.add_argument("--noise", default="folder")
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args()
    res = collect(a.db, a.dataset, a.protocol, a.noise)
    for model, m in res.items():
        snrs = list(m["noisy"])
        if not snrs:  # no noisy results stored yet for this model
            continue
        print(f"\n### {model} (clean {fmt(m['clean'])})\n")
        print("| condition | " + " | ".join(snrs) + " |")
        print("|---|" + "---:|" * len(snrs))
        print("| noisy | " + " | ".join(fmt(m["noisy"][s]) for s in snrs) + " |")
        enhs = [e for e in ORDER if e in m["enhanced"]] + sorted(set(m["enhanced"]) - set(ORDER))
        for e in enhs:
            print(f"| {e} | " + " | ".join(fmt(m["enhanced"][e].get(s)) for s in snrs) + " |")
        if m["clean"] is None:
            continue
        clean = m["clean"]["uar"]
        print(f"\nshare of the clean - noisy gap recovered, (enh - noisy) / (clean - noisy):\n")
        print("| enhancer | " + " | ".join(snrs) + " |")
        print("|---|" + "---:|" * len(snrs))
        m["gap_recovered"] = {}
        for e in enhs:
            shares = []
            for s in snrs:
                en, nz = m["enhanced"][e].get(s), m["noisy"].get(s)
                gap = clean - nz["uar"] if nz else None
                share = (en["uar"] - nz["uar"]) / gap if en and nz and gap and abs(gap) > 1e-9 else None
                shares.append(share)
                m["gap_recovered"].setdefault(e, {})[s] = share
            print(f"| {e} | " + " | ".join(f"{100 * x:.0f} %" if x is not None else "–" for x in shares) + " |")
        guard_check(m, enhs, snrs)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


def guard_check(m: dict, enhs: list[str], snrs: list[str], low=("-5 dB", "0 dB")) -> None:
    """Print (and store in ``m["guard"]``) the guard's promises for every guarded-X beside X."""
    pairs = [(e, e[len("guarded-"):]) for e in enhs if e.startswith("guarded-") and e[len("guarded-"):] in enhs]
    if not pairs:
        return
    print("\nguard check: guarded - noisy (pp; promise >= -1 at every SNR) and share of the inner "
          "enhancer's gain kept (promise >= 80 % at -5 and 0 dB):\n")
    print("| guard | " + " | ".join(snrs) + " | promises |")
    print("|---|" + "---:|" * len(snrs) + "---|")
    m["guard"] = {}
    for g, inner in pairs:
        cells, ok, missing = [], True, []
        for s in snrs:
            gv, iv, nz = m["enhanced"][g].get(s), m["enhanced"][inner].get(s), m["noisy"].get(s)
            if not (gv and iv and nz):
                cells.append("–")
                missing.append(s)
                continue
            d = gv["uar"] - nz["uar"]
            gain = iv["uar"] - nz["uar"]
            kept = d / gain if gain > 0 else None
            ok &= d >= -1.0
            if s in low:
                ok &= kept is None or kept >= 0.8  # no gain to keep: nothing promised
            m["guard"].setdefault(g, {})[s] = {"vs_noisy_pp": d, "inner_gain_pp": gain, "kept": kept}
            cells.append(f"{d:+.1f}" + (f", {100 * kept:.0f} %" if kept is not None else ""))
        # an SNR without the guard, its inner enhancer or noisy is not checked: say so, not "NOT kept"
        verdict = "NOT kept" if not ok else (f"kept where measured ({', '.join(missing)} not run)" if missing else "kept")
        m["guard"].setdefault(g, {})["promises_kept"] = None if ok and missing else ok  # None: not all checked
        print(f"| {g} | " + " | ".join(cells) + f" | {verdict} |")


if __name__ == "__main__":
    main()
