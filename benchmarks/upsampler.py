"""Which 16 -> 48 kHz path should a 48 kHz enhancer take? Chosen on held-out speech, checked on EMO-DB.

DeepFilterNet and RNNoise run at 48 kHz; the harness's audio is 16 kHz. soxr (a near-ideal
low-pass) leaves 8-24 kHz digitally silent, and DeepFilterNet erased some band-limited noisy
EMO-DB utterances through it (issue 22). This script scores each upsampler of
``ser_bench_plugins.pretrained.common.UPSAMPLERS`` per enhancer:

* **validation** (the choice): LibriSpeech validation speakers (never an SER corpus) mixed with
  the noise folders' *train* part at -5 / 0 / 10 dB;
* **test** (the check): EMO-DB (every speaker) mixed with the noise *test* part at the same SNRs.

Per upsampler: mean / median / worst ΔSI-SDR against the noisy input, and "collapses": outputs
whose energy is more than 10 dB below the clean speech's. For the test utterances where soxr and
the chosen path differ most it also records the input's energy above 8 kHz after upsampling and
DeepFilterNet's mean local-SNR estimate (libDF's) with each path: the measured cause.

    python benchmarks/upsampler.py --per-snr 24            # writes benchmarks/upsampler.json
    python benchmarks/upsampler.py --enhancer rnnoise --per-snr 24 --out /tmp/u.json
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
SNRS = (-5.0, 0.0, 10.0)
COLLAPSE_DB = -10.0


def band_db(x48: np.ndarray, lo: float, hi: float) -> float:
    """Energy of ``x48`` (48 kHz) between ``lo`` and ``hi`` Hz over its total energy, in dB."""
    spec = np.abs(np.fft.rfft(np.asarray(x48, np.float64))) ** 2
    f = np.fft.rfftfreq(len(x48), 1 / 48_000)
    return float(10 * np.log10(spec[(f >= lo) & (f < hi)].sum() / max(spec.sum(), 1e-30) + 1e-30))


def score(enh, examples) -> list[dict]:
    from ser_bench.quality import si_sdr

    rows = []
    for ex in examples:
        if hasattr(enh, "enhance_with_snr"):
            y, lsnr = enh.enhance_with_snr(ex.noisy)
            lsnr_mean = float(np.mean(lsnr))
        else:
            y, lsnr_mean = enh.enhance(ex.noisy), None
        rows.append({"snr": ex.snr, "utterance": ex.speech_id, "clip": ex.clip_id,
                     "d_sisdr": si_sdr(ex.clean, y) - si_sdr(ex.clean, ex.noisy),
                     "energy_db": float(10 * np.log10(np.sum(y.astype(np.float64) ** 2)
                                                      / max(np.sum(ex.clean.astype(np.float64) ** 2), 1e-30))),
                     "lsnr_mean": lsnr_mean})
    return rows


def summarise(rows: list[dict]) -> dict:
    out = {}
    for s in SNRS:
        d = np.array([r["d_sisdr"] for r in rows if r["snr"] == s])
        e = np.array([r["energy_db"] for r in rows if r["snr"] == s])
        out[f"{s:g}"] = {"n": int(len(d)), "mean": round(float(d.mean()), 3), "median": round(float(np.median(d)), 3),
                         "worst": round(float(d.min()), 2), "collapses": int((e < COLLAPSE_DB).sum()),
                         "lowest_energy_db": round(float(e.min()), 1)}
    d = np.array([r["d_sisdr"] for r in rows])
    out["all"] = {"mean": round(float(d.mean()), 3),
                  "collapses": int(sum(r["energy_db"] < COLLAPSE_DB for r in rows))}
    return out


def mixtures(reg, dataset: str, root: Path, noise_root: Path, part: str, per_snr: int, seed: int, valid_only: bool):
    from ser_bench.training import SpeechPool, cache_clips, fixed_mixtures, split_clips, split_speakers

    utts = reg.create("dataset", dataset, {"root": str(root)}).utterances()
    if valid_only:
        utts = split_speakers(utts, valid_fraction=0.1, test_fraction=0.0)["valid"]
    ns = reg.create("noise_source", "folder", {"root": str(noise_root)})
    clips = cache_clips(ns.clips(part))
    if part == "train":
        clips = split_clips(clips)[1]  # the validation clips of the train part (as the guard's calibration)
    pool = SpeechPool.load(utts)
    return fixed_mixtures(pool, clips, list(SNRS), seed=seed, source=ns.name, per_snr=per_snr, max_seconds=4.0)


def main() -> None:
    from ser_bench.plugins import default_registry
    from ser_bench_plugins.pretrained.common import DEFAULT_UPSAMPLER, UPSAMPLERS, up

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--enhancer", default="deepfilternet")
    ap.add_argument("--librispeech", default=str(SHARED / "librispeech"))
    ap.add_argument("--emodb", default=str(SHARED / "emodb"))
    ap.add_argument("--noise", default=str(SHARED / "noise"))
    ap.add_argument("--per-snr", type=int, default=24)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--upsampler", action="append", help=f"default: all of {', '.join(UPSAMPLERS)}")
    ap.add_argument("--out", default=str(HERE / "upsampler.json"))
    a = ap.parse_args()
    reg = default_registry()
    names = a.upsampler or list(UPSAMPLERS)
    sets = {"validation": mixtures(reg, "librispeech", Path(a.librispeech), Path(a.noise), "train", a.per_snr, a.seed,
                                   True),
            "test": mixtures(reg, "emodb", Path(a.emodb), Path(a.noise), "test", a.per_snr, a.seed, False)}
    doc: dict = {"enhancer": a.enhancer, "snrs": list(SNRS), "per_snr": a.per_snr, "seed": a.seed,
                 "collapse": f"output energy more than {-COLLAPSE_DB:g} dB below the clean speech's",
                 "validation": "LibriSpeech validation speakers x noise train part (validation clips)",
                 "test": "EMO-DB, all speakers x noise test part", "results": {}, "rows": {}}
    t0 = time.time()
    for name in names:
        enh = reg.create("enhancer", a.enhancer, {"upsampler": name})
        for which, exs in sets.items():
            rows = score(enh, exs)
            doc["rows"].setdefault(which, {})[name] = rows
            doc["results"].setdefault(which, {})[name] = summarise(rows)
            print(f"{a.enhancer} {name:9s} {which:10s} " + json.dumps(doc["results"][which][name]["all"]), flush=True)
    val = doc["results"]["validation"]
    chosen = max(val, key=lambda n: (-val[n]["all"]["collapses"], val[n]["all"]["mean"]))
    doc["chosen_on_validation"] = chosen
    doc["default"] = DEFAULT_UPSAMPLER
    # the cause, on the test utterances where soxr and the chosen path differ most
    if "soxr" in names and chosen != "soxr":
        rs, rc = doc["rows"]["test"]["soxr"], doc["rows"]["test"][chosen]
        worst = sorted(range(len(rs)), key=lambda i: rs[i]["d_sisdr"] - rc[i]["d_sisdr"])[:6]
        ex_by = {(e.speech_id, e.snr): e for e in sets["test"]}
        doc["worst_soxr"] = []
        for i in worst:
            ex = ex_by[(rs[i]["utterance"], rs[i]["snr"])]
            entry = {"utterance": rs[i]["utterance"], "snr": rs[i]["snr"], "clip": rs[i]["clip"]}
            for name in ("soxr", chosen):
                x48 = up(ex.noisy, 16_000, name)
                r = doc["rows"]["test"][name][i]
                entry[name] = {"d_sisdr": round(r["d_sisdr"], 2), "energy_db": round(r["energy_db"], 1),
                               "lsnr_mean": None if r["lsnr_mean"] is None else round(r["lsnr_mean"], 2),
                               "input_8_8.5k_db": round(band_db(x48, 8000, 8500), 1),
                               "input_8.5_24k_db": round(band_db(x48, 8500, 24000), 1)}
            doc["worst_soxr"].append(entry)
    doc["seconds"] = round(time.time() - t0, 1)
    doc["command"] = "python benchmarks/upsampler.py " + " ".join(sys.argv[1:])
    doc["load_average"] = [round(v, 2) for v in os.getloadavg()]
    Path(a.out).write_text(json.dumps(doc, indent=1))
    print(json.dumps({"chosen_on_validation": chosen, "default": DEFAULT_UPSAMPLER,
                      "validation": {n: val[n]["all"] for n in val},
                      "test": {n: doc["results"]["test"][n]["all"] for n in doc["results"]["test"]}}, indent=1))


if __name__ == "__main__":
    main()
