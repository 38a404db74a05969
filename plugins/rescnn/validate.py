"""Validation SI-SDR of a rescnn checkpoint, and the choice of its inference setting.

Uses only what the checkpoint records as *validation* data: its validation speakers
(``meta.data.speakers.valid``) mixed with the validation clips of the noise source's *train*
part (:func:`ser_bench.training.split_clips`), never its test speakers nor the noise test part.
Recipes with different losses are compared on this SI-SDR table (their losses are not
comparable), and :func:`tune_offset` picks ``mask_offset_db`` from it.

    python -m ser_bench_plugins.rescnn.validate CKPT --speech-root ../shared/data/librispeech \\
        --noise-root ../shared/data/noise [--offsets 0,2,4,6] [--per-snr 8]
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_bench.training import SpeechPool, cache_clips, fixed_mixtures, si_sdr, split_clips

VALID_SNRS: tuple[float, ...] = (-5, 0, 5, 10, 15, 20)


def validation_mixtures(checkpoint: str | Path, speech_root: str | Path, noise_root: str | Path,
                        snrs: Sequence[float] = VALID_SNRS, per_snr: int = 8, max_seconds: float = 6.0,
                        seed: int = 4321):
    """Whole-utterance mixtures of the checkpoint's validation speakers and validation noise clips."""
    from ser_bench_plugins.noise_folder import FolderNoise
    from ser_bench_plugins.speech_corpora import LibriSpeech

    from . import model as M

    meta = M.load_checkpoint(checkpoint)["meta"]
    valid = set(meta["data"]["speakers"]["valid"])
    utts = [u for u in LibriSpeech(root=speech_root).utterances() if u.speaker in valid]
    noise = FolderNoise(root=noise_root)
    _, vclips = split_clips(cache_clips(noise.clips("train")))
    return fixed_mixtures(SpeechPool.load(utts), vclips, snrs, seed=seed, source=noise.name,
                          per_snr=per_snr, max_seconds=max_seconds)


def sisdr_table(checkpoint: str | Path, examples, offsets: Sequence[float] = (0.0,),
                max_gain_db: float | None = 0.0, device: str = "cpu") -> dict[str, Any]:
    """Mean SI-SDR improvement per SNR for each mask offset (the masks are computed once)."""
    from ser_bench.dsp import from_log_magnitude, log_magnitude

    from .enhancer import DB_PER_NEPER, ResCNNEnhancer

    enh = ResCNNEnhancer(checkpoint=str(checkpoint), mask_offset_db=0.0, max_gain_db=max_gain_db, device=device)
    per: dict[float, dict[float, list[float]]] = {float(o): {} for o in offsets}
    for ex in examples:
        spec, mask = enh.masks(ex.noisy)
        base = si_sdr(ex.noisy, ex.clean)
        for o in offsets:
            m = mask + o / DB_PER_NEPER
            if max_gain_db is not None:
                m = np.minimum(m, max_gain_db / DB_PER_NEPER)
            y = from_log_magnitude(log_magnitude(spec) + m, spec, len(ex.noisy))
            per[float(o)].setdefault(ex.snr, []).append(si_sdr(y, ex.clean) - base)
    return {str(o): {str(snr): round(float(np.mean(v)), 3) for snr, v in sorted(d.items())} for o, d in per.items()}


def tune_offset(table: dict[str, Any], max_loss_db: float = 0.0, high_snrs: Sequence[float] = (15, 20)) -> float:
    """The offset with the largest mean improvement over all SNRs among those that lose no more
    than ``max_loss_db`` at any of ``high_snrs`` (else the one losing least there)."""
    def mean_all(o: str) -> float:
        return float(np.mean(list(table[o].values())))

    def worst_high(o: str) -> float:
        return min(table[o][str(float(s))] for s in high_snrs if str(float(s)) in table[o])

    ok = [o for o in table if worst_high(o) >= -max_loss_db]
    best = max(ok, key=mean_all) if ok else max(table, key=worst_high)
    return float(best)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="+")
    ap.add_argument("--speech-root", required=True)
    ap.add_argument("--noise-root", required=True)
    ap.add_argument("--offsets", default="0")
    ap.add_argument("--per-snr", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the paper-width per-frame model needs a GPU)")
    ap.add_argument("--speakers-from", help="take the validation speakers from this checkpoint (default: the first)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    offsets = [float(v) for v in a.offsets.split(",")]
    exs = None
    for ck in a.checkpoint:
        if exs is None:  # every checkpoint of one comparison shares its validation split
            exs = validation_mixtures(a.speakers_from or ck, a.speech_root, a.noise_root, per_snr=a.per_snr)
        table = sisdr_table(ck, exs, offsets, device=a.device)
        print(json.dumps({"checkpoint": ck, "delta_sisdr_db": table, "best_offset": tune_offset(table)}))


if __name__ == "__main__":
    main()
