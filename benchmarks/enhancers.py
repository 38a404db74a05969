"""The enhancer table: every enhancer on the same held-out mixtures; writes benchmarks/enhancers.json.

Speech: EMO-DB (German, acted; never an enhancer training corpus here), every speaker, first
``--per-snr`` utterances in a seeded order; noise: the shared noise folders' *test* part (never
used for training rescnn); SNRs -5..20 dB. Scores: SI-SDR, STOI, wide-band PESQ of the noisy
input and of each enhancer's output, and each enhancer's real-time factor on one core (CPU
seconds of this process per audio second, with OMP / MKL / torch limited to one thread).

    python benchmarks/enhancers.py --emodb ../shared/data/emodb --noise ../shared/data/noise
    python benchmarks/enhancers.py --markdown benchmarks/enhancers.json   # the README table
    python benchmarks/enhancers.py --enhancer rescnn --update              # re-measure one row in place

``--update`` re-measures only the named enhancers and replaces their rows in ``--out``, after
checking that the mixtures are the very same (speech, noise clips, seed and the noisy scores).

Prints a JSON summary (per enhancer: SI-SDR / STOI / PESQ change at 0 and 20 dB, RTF).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # before numpy / torch load
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

ENHANCERS = ["none", "wiener", "rescnn", "deepfilternet", "rnnoise", "spectral-gating"]
SNRS = [-5, 0, 5, 10, 15, 20]


#: --update: the noisy input's scores may differ by this much (numerical noise of library versions:
#: PESQ / STOI / SI-SDR of the very same mixtures) and still count as the same mixtures.
NOISY_TOLERANCE = 1e-4


def noisy_gap(old: list[dict], new: list[dict]) -> float:
    """Largest absolute difference between two noisy-score tables (inf if their shapes differ)."""
    if len(old) != len(new) or any(set(a) != set(b) for a, b in zip(old, new)):
        return float("inf")
    return max((abs(float(a[k]) - float(b[k])) for a, b in zip(old, new) for k in a), default=0.0)


def markdown(doc: dict) -> str:
    """Compact table: change vs noisy at 0 / 20 dB SNR for each metric, and the RTF."""
    noisy = {r["snr_db"]: r for r in doc["noisy"]}
    lines = [
        "| enhancer | Δ SI-SDR −5 / 0 / 20 dB | Δ STOI 0 / 20 dB | Δ PESQ 0 / 20 dB | RTF (1 core) |",
        "|---|---:|---:|---:|---:|",
        f"| (noisy: SI-SDR, STOI, PESQ) | {noisy[-5.0]['sisdr']:.1f} / {noisy[0.0]['sisdr']:.1f} / "
        f"{noisy[20.0]['sisdr']:.1f} | {noisy[0.0]['stoi']:.3f} / {noisy[20.0]['stoi']:.3f} | "
        f"{noisy[0.0]['pesq']:.2f} / {noisy[20.0]['pesq']:.2f} | |",
    ]
    for name, e in doc["enhancers"].items():
        if name == "none":
            continue
        r = {row["snr_db"]: row for row in e["rows"]}
        lines.append(
            f"| {name} | {r[-5.0]['sisdr_delta']:+.1f} / {r[0.0]['sisdr_delta']:+.1f} / {r[20.0]['sisdr_delta']:+.1f} | "
            f"{r[0.0]['stoi_delta']:+.3f} / {r[20.0]['stoi_delta']:+.3f} | "
            f"{r[0.0]['pesq_delta']:+.2f} / {r[20.0]['pesq_delta']:+.2f} | {e['rtf_cpu']:.3f} |"
        )
    return "\n".join(lines)


def summary(doc: dict) -> dict:
    out = {}
    for name, e in doc["enhancers"].items():
        r = {row["snr_db"]: row for row in e["rows"]}
        out[name] = {"rtf_cpu": round(e["rtf_cpu"], 4), "rtf_wall": round(e["rtf_wall"], 4),
                     **{f"{m}_delta_{int(s)}dB": round(r[s][f"{m}_delta"], 3)
                        for m in ("sisdr", "stoi", "pesq") for s in (0.0, 20.0)}}
    return {"utterances_per_snr": doc["speech"]["utterances_per_snr"], "load_average": doc["rtf"]["load_average"],
            "enhancers": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--emodb", default=str(HERE.parent.parent / "shared" / "data" / "emodb"))
    ap.add_argument("--noise", default=str(HERE.parent.parent / "shared" / "data" / "noise"))
    ap.add_argument("--per-snr", type=int, default=40)
    ap.add_argument("--enhancer", action="append", help=f"default: {' '.join(ENHANCERS)}")
    ap.add_argument("--out", default=str(HERE / "enhancers.json"))
    ap.add_argument("--markdown", metavar="JSON", help="only print the README table of an existing JSON file")
    ap.add_argument("--update", action="store_true", help="replace only the named enhancers' rows in --out")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(json.loads(Path(a.markdown).read_text())))
        return
    from ser_bench.cli_enhance import eval_enhancer

    args = []
    for name in a.enhancer or ENHANCERS:
        args += ["-e", name]
    args += ["--speech", "emodb", "--speech-root", a.emodb, "--all-speakers", "--noise", "folder", "--noise-root",
             a.noise, "--per-snr", str(a.per_snr), "--threads", "1", "--json-out", a.out]
    for s in SNRS:
        args += ["--snr", str(s)]
    old = json.loads(Path(a.out).read_text()) if a.update else None
    if a.update:
        args[args.index("--json-out") + 1] = a.out + ".new"
    eval_enhancer.main(args, standalone_mode=False)
    doc = json.loads(Path(args[args.index("--json-out") + 1]).read_text())
    command = "python benchmarks/enhancers.py " + " ".join(sys.argv[1:])
    if a.update:
        same = ("speech", "noise_clips", "snrs", "seed", "metrics")  # noise: its clips, not the path they lie at
        diff = [k for k in same if old.get(k) != doc.get(k)]
        diff += [f"noise {k}" for k in ("source", "part") if old["noise"].get(k) != doc["noise"].get(k)]
        gap = noisy_gap(old["noisy"], doc["noisy"])
        diff += [f"noisy scores differ by up to {gap:.2g}"] if gap > NOISY_TOLERANCE else []
        if diff:
            raise SystemExit(f"--update: the new mixtures differ from {a.out}'s ({', '.join(diff)}); run without "
                             f"--update (the new results are in {a.out}.new)")
        Path(a.out + ".new").unlink()
        old["enhancers"].update(doc["enhancers"])
        old.setdefault("updates", []).append({"command": command, "enhancers": sorted(doc["enhancers"]),
                                              "rtf": doc["rtf"]})
        doc, command = old, old["command"]
    doc["command"] = command
    Path(a.out).write_text(json.dumps(doc, indent=2))
    print(json.dumps(summary(doc), indent=2))
    print(markdown(doc))


if __name__ == "__main__":
    main()
