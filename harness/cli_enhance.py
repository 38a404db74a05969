"""``bench train``, ``bench enhance``, ``bench eval-enhancer``: train, apply and score enhancers.

Registered on the ``bench`` group by :mod:`ser_bench.cli` (``cli.add_command(train)`` ...).

\b
  bench train rescnn --speech librispeech --speech-root ../shared/data/librispeech \\
        --noise folder --noise-root ../shared/data/noise --out rescnn.pt --minutes 30
  bench enhance --enhancer rescnn noisy.wav --out enhanced/
  bench eval-enhancer -e none -e wiener -e deepfilternet --speech emodb --speech-root ../shared/data/emodb \\
        --all-speakers --noise folder --noise-root ../shared/data/noise --json-out scores.json
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from .errors import BenchError, ConfigError


def _options(options: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from .config import parse_option

    out: dict[str, dict[str, Any]] = {}
    for text in options:
        plugin, key, value = parse_option(text)
        out.setdefault(plugin, {})[key] = value
    return out


def _corpus_options(options, speech: str, speech_root, noise: str, noise_root) -> dict:  # noqa: ANN001
    """-o options plus the --speech-root / --noise-root shorthands."""
    opts = _options(options)
    if speech_root:
        opts.setdefault(speech, {})["root"] = speech_root
    if noise_root:
        opts.setdefault(noise, {})["root"] = noise_root
    return opts


def _registry():
    from .plugins import default_registry

    return default_registry()


def _floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated numbers, e.g. 0,5,10") from None


OPTION_HELP = "Plugin option PLUGIN.KEY=VALUE (repeatable; value parsed as JSON if possible)."


@click.command()
@click.argument("enhancer")
@click.option("--speech", required=True, help="Clean-speech dataset plugin (librispeech, commonvoice, ...).")
@click.option("--speech-root", type=click.Path(file_okay=False), help="Shorthand for -o SPEECH.root=PATH.")
@click.option("--noise", required=True, help="Noise source plugin (folder, audioset, ...); its *train* part is used.")
@click.option("--noise-root", type=click.Path(file_okay=False), help="Shorthand for -o NOISE.root=PATH.")
@click.option("--option", "-o", "options", multiple=True, metavar="PLUGIN.KEY=VALUE", help=OPTION_HELP)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint file to write.")
@click.option("--resume", type=click.Path(dir_okay=False, exists=True), help="Continue from this checkpoint.")
@click.option("--init", "init_from", type=click.Path(exists=True, dir_okay=False),
              help="Warm start: weights and normalisation from this checkpoint, a fresh optimizer and budget.")
@click.option("--model", type=click.Choice(["dense", "paper"]), help="rescnn: dense (default) or paper (per-frame).")
@click.option("--width", help="rescnn: feature maps, e.g. 16,32,64,128 (CPU) or 64,128,256,512 (paper).")
@click.option("--steps", type=int, help="Training steps (budget; with --minutes, whichever ends first).")
@click.option("--minutes", type=float, help="Training time budget in minutes (excludes data loading).")
@click.option("--batch", type=int, help="Batch size (rescnn paper: 64 windows; dense: 8 crops).")
@click.option("--lr", type=float, help="Learning rate (paper: 0.01).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), help="Optimizer (paper: sgd).")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), help="Learning-rate schedule.")
@click.option("--snrs", help="Training SNRs in dB, comma-separated (paper: 0,5,10,15,20,25).")
@click.option("--p-clean", type=float, help="Share of near-clean (60 dB) examples.")
@click.option("--speed", "speed_range", help="Speed perturbation range of the speech, LOW,HIGH (e.g. 0.9,1.4): "
              "raises or lowers pitch and formants, as vocal effort and other voices do.")
@click.option("--p-speed", type=float, help="Share of examples sped up or slowed down (with --speed).")
@click.option("--tilt", type=float, help="Largest pre-emphasis coefficient (flatter spectrum of loud speech).")
@click.option("--p-tilt", type=float, help="Share of examples pre-emphasised (with --tilt).")
@click.option("--crop-frames", type=int, help="rescnn dense: frames per training crop.")
@click.option("--loss", type=click.Choice(["logmag", "compressed"]),
              help="rescnn: log-magnitude MSE (paper) or compressed-magnitude MSE.")
@click.option("--valid-fraction", type=float, help="Share of speakers held out for validation (default 0.1).")
@click.option("--test-fraction", type=float,
              help="Share of speakers held out for testing (default 0.2; 0: evaluate on another corpus).")
@click.option("--valid-every", type=int, help="Validate and checkpoint every N steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, help="torch threads (default: torch's choice).")
@click.option("--device", help="Where the model trains: cpu (default), cuda or cuda:N. Not inherited by --resume.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Processes building training batches ahead of each step (default 0: the training process). "
                   "The same batches either way; use them to keep a GPU busy.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(enhancer, speech, speech_root, noise, noise_root, options, out, resume, init_from, model, width, steps, minutes,
          batch, lr, optimizer, schedule, snrs, p_clean, speed_range, p_speed, tilt, p_tilt, crop_frames, loss, valid_fraction, test_fraction, valid_every,
          seed, threads, device, workers, quiet) -> None:
    """Train ENHANCER on clean SPEECH mixed on the fly with NOISE; write a checkpoint.

    Speakers are split train / valid / test (held out); validation mixtures use held-out
    speakers and noise clips never trained on. Interrupt at any time and continue with --resume.
    """
    opts = _corpus_options(options, speech, speech_root, noise, noise_root)
    reg = _registry()
    enh_opts = dict(opts.get(enhancer, {}))
    if model:
        enh_opts["model"] = model
    if width:
        enh_opts["width"] = [int(v) for v in _floats(width)]
    enh = reg.create("enhancer", enhancer, enh_opts)
    ds = reg.create("dataset", speech, opts.get(speech, {}))
    ns = reg.create("noise_source", noise, opts.get(noise, {}))
    kwargs: dict[str, Any] = {"seed": seed}
    for k, v in {"steps": steps, "minutes": minutes, "batch": batch, "lr": lr, "optimizer": optimizer,
                 "schedule": schedule, "snrs": _floats(snrs), "p_clean": p_clean, "crop_frames": crop_frames,
                 "p_speed": p_speed, "tilt": tilt, "p_tilt": p_tilt,
                 "loss": loss, "init": init_from, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                 "valid_every": valid_every, "threads": threads, "device": device, "workers": workers}.items():
        if v is not None:
            kwargs[k] = v
    if speed_range is not None:
        lohi = _floats(speed_range)
        if len(lohi) != 2:
            raise click.BadParameter(f"{speed_range!r}: give LOW,HIGH, e.g. 0.9,1.4", param_hint="--speed")
        kwargs["speed"] = lohi
    if steps is None and minutes is None and resume is None:
        raise ConfigError("give a training budget: --steps N and/or --minutes M")
    utts = ds.utterances()
    data = {"dataset": speech, "options": ds.identity()["config"], "utterances": len(utts)}
    click.echo(f"training {enhancer} on {len(utts)} {speech} utterances + {noise} (train part) -> {out}", err=True)
    meta = enh.train(utts, ns, out=out, resume=resume, data_description=data, progress=not quiet, **kwargs)
    click.echo(json.dumps({"checkpoint": str(out), "steps": meta.get("steps"), "wall_s": meta.get("wall_s"),
                           "valid": meta.get("valid")}, indent=2))


def enhance_file(enh, src: Path, dst: Path) -> dict[str, Any]:
    """Enhance one file channel by channel; write it at the input's rate, channels and format."""
    import soundfile as sf

    from .audio import check_signal, resample
    from .interfaces import SAMPLE_RATE

    try:
        info = sf.info(str(src))
        data, sr = sf.read(str(src), dtype="float32", always_2d=True)
    except Exception as exc:
        raise BenchError(f"{src}: cannot decode audio ({exc}); the file is corrupt or not audio") from None
    if data.shape[0] == 0:
        raise BenchError(f"{src}: the file holds no samples")
    out = np.zeros_like(data)
    for ch in range(data.shape[1]):
        x = check_signal(data[:, ch], source=f"{src} (channel {ch + 1})")
        y = enh.enhance(resample(x, sr, SAMPLE_RATE))
        y = resample(y, SAMPLE_RATE, sr) if sr != SAMPLE_RATE else y
        n = min(len(y), len(x))
        out[:n, ch] = y[:n]  # resampling back can differ by a sample: keep the input's length
    subtype = info.subtype if sf.check_format(info.format, info.subtype) else None
    if subtype and subtype.startswith("PCM") and float(np.max(np.abs(out), initial=0.0)) > 1.0:
        out = out / float(np.max(np.abs(out)))  # integer formats would clip
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dst), out if out.shape[1] > 1 else out[:, 0], sr, subtype=subtype, format=info.format)
    return {"in": str(src), "out": str(dst), "sample_rate": sr, "channels": data.shape[1], "frames": data.shape[0]}


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--enhancer", "-e", required=True, help="Enhancer plugin name (bench plugins).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Weights for enhancers that take a checkpoint option (e.g. rescnn).")
@click.option("--option", "-o", "options", multiple=True, metavar="PLUGIN.KEY=VALUE", help=OPTION_HELP)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
def enhance(inputs, enhancer, checkpoint, options, out_dir) -> None:
    """Enhance audio files INPUTS... with ENHANCER into --out (same rate, channels, length, format)."""
    reg = _registry()
    cls = reg.get("enhancer", enhancer)
    opts = dict(_options(options).get(enhancer, {}))
    if checkpoint:
        if "checkpoint" not in cls.Config.model_fields:
            raise ConfigError(f"enhancer {enhancer!r} takes no checkpoint; drop --checkpoint")
        opts["checkpoint"] = checkpoint
    enh = cls(**opts)
    if enh.requires_training and not enh.is_trained():
        msg = enh.untrained_message() if hasattr(enh, "untrained_message") else (
            f"enhancer {enhancer!r} needs training first: bench train {enhancer} --speech ... --noise ... --out CKPT")
        raise BenchError(msg)
    out = Path(out_dir)
    srcs = [Path(p) for p in inputs]
    names = [p.name for p in srcs]
    if len(set(names)) != len(names):
        raise ConfigError("two inputs share a file name; enhance them into separate --out folders")
    for src in srcs:
        r = enhance_file(enh, src, out / src.name)
        click.echo(f"{r['in']} -> {r['out']} ({r['channels']} ch, {r['sample_rate']} Hz)")


def _select_speakers(enhs: dict[str, Any], utts: list, all_speakers: bool) -> list:
    """The utterances to evaluate on: every speaker (``all_speakers``), else speakers every
    enhancer with a checkpoint records as held out, else the default split's test speakers."""
    from .training import split_speakers

    if all_speakers:
        return list(utts)
    held: set[str] | None = None
    for enh in enhs.values():
        ids = (getattr(enh, "meta", None) or {}).get("data", {}).get("speakers", {}).get("test")
        if ids:
            held = set(ids) if held is None else held & set(ids)
    if held is not None:
        return [u for u in utts if u.speaker in held]
    return split_speakers(utts)["test"]


def _metrics(clean: np.ndarray, x: np.ndarray, pesq: bool) -> dict[str, float]:
    from .quality import pesq_wb
    from .training import si_sdr, stoi

    out = {"sisdr": si_sdr(x, clean), "stoi": stoi(clean, x)}
    if pesq:
        try:
            out["pesq"] = pesq_wb(clean, x)
        except Exception:  # PESQ refuses some signals (e.g. no utterance detected): leave it out
            out["pesq"] = float("nan")
    return out


def _rows(per: dict[float, list[dict[str, float]]]) -> list[dict[str, Any]]:
    rows = []
    for snr in sorted(per):
        vals = per[snr]
        row: dict[str, Any] = {"snr_db": snr, "n": len(vals)}
        for k in vals[0]:
            a = np.asarray([v[k] for v in vals], dtype=np.float64)
            row[k] = float(np.nanmean(a)) if np.any(np.isfinite(a)) else float("nan")
        rows.append(row)
    return rows


def evaluate_enhancers(enhancers: dict[str, Any], examples: list, *, pesq: bool = True,
                       progress: bool = False) -> dict[str, Any]:
    """SI-SDR / STOI / PESQ of the noisy input and of each enhancer's output, per SNR, and each
    enhancer's real-time factor (CPU seconds of this process and wall seconds per audio second).

    Every enhancer sees the same ``examples`` (noisy, clean pairs); the noisy scores are computed once.
    """
    import time

    from .interfaces import SAMPLE_RATE

    it: Any = examples
    if progress:
        from tqdm import tqdm

        it = tqdm(examples, desc="noisy", unit="mix", leave=False)
    noisy: dict[float, list[dict[str, float]]] = {}
    for ex in it:
        noisy.setdefault(ex.snr, []).append(_metrics(ex.clean, ex.noisy, pesq))
    seconds = sum(len(ex.noisy) for ex in examples) / SAMPLE_RATE
    out: dict[str, Any] = {"noisy": _rows(noisy), "enhancers": {}}
    for name, enh in enhancers.items():
        per: dict[float, list[dict[str, float]]] = {}
        cpu = wall = 0.0
        it = examples
        if progress:
            from tqdm import tqdm

            it = tqdm(examples, desc=name, unit="mix", leave=False)
        for ex in it:
            c0, w0 = time.process_time(), time.perf_counter()
            y = enh.enhance(ex.noisy)
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            per.setdefault(ex.snr, []).append(_metrics(ex.clean, y, pesq))
        rows = _rows(per)
        for row, ref in zip(rows, out["noisy"]):
            for k in list(row):
                if k in ("snr_db", "n"):
                    continue
                row[f"{k}_delta"] = row[k] - ref[k]
        out["enhancers"][name] = {"rows": rows, "rtf_cpu": cpu / seconds, "rtf_wall": wall / seconds,
                                  "identity": enh.identity()}
    return out


def format_enhancer_table(result: dict[str, Any]) -> str:
    """One Markdown table: per enhancer and SNR, the enhanced scores and their change vs noisy."""
    has_pesq = "pesq" in (result["noisy"][0] if result["noisy"] else {})
    head = "| enhancer | SNR (dB) | n | SI-SDR | Δ SI-SDR | STOI | Δ STOI |" + (" PESQ | Δ PESQ |" if has_pesq else "")
    lines = [head + " RTF (CPU) |", "|---|" + "---:|" * (head.count("|") - 1)]

    def cells(r: dict[str, Any], delta: bool) -> str:
        s = f"{r['sisdr']:.2f} | {r['sisdr_delta']:+.2f} | {r['stoi']:.3f} | {r['stoi_delta']:+.3f} |" if delta else \
            f"{r['sisdr']:.2f} | | {r['stoi']:.3f} | |"
        if has_pesq:
            s += f" {r['pesq']:.2f} | {r['pesq_delta']:+.2f} |" if delta else f" {r['pesq']:.2f} | |"
        return s

    for r in result["noisy"]:
        lines.append(f"| (noisy) | {r['snr_db']:g} | {r['n']} | {cells(r, False)} |")
    for name, e in result["enhancers"].items():
        for r in e["rows"]:
            lines.append(f"| {name} | {r['snr_db']:g} | {r['n']} | {cells(r, True)} {e['rtf_cpu']:.3f} |")
    return "\n".join(lines)


@click.command(name="eval-enhancer")
@click.option("--enhancer", "-e", "enhancer_names", multiple=True, required=True,
              help="Enhancer plugin name (repeatable: all are scored on the same mixtures).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Weights for the enhancer(s) that take a checkpoint option.")
@click.option("--speech", required=True, help="Clean-speech dataset plugin.")
@click.option("--speech-root", type=click.Path(file_okay=False), help="Shorthand for -o SPEECH.root=PATH.")
@click.option("--all-speakers", is_flag=True,
              help="Use every speaker of SPEECH (a corpus no enhancer trained on, e.g. emodb); default: held-out "
                   "test speakers.")
@click.option("--noise", required=True, help="Noise source plugin; its *test* part is used.")
@click.option("--noise-root", type=click.Path(file_okay=False), help="Shorthand for -o NOISE.root=PATH.")
@click.option("--option", "-o", "options", multiple=True, metavar="PLUGIN.KEY=VALUE", help=OPTION_HELP)
@click.option("--snr", "snrs", multiple=True, type=float, help="SNR in dB (repeatable). Default: -5 0 5 10 15 20.")
@click.option("--per-snr", type=int, default=40, show_default=True, help="Utterances per SNR.")
@click.option("--max-seconds", type=float, default=8.0, show_default=True, help="Crop utterances to this length.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Mixing seed.")
@click.option("--pesq/--no-pesq", default=True, show_default=True, help="Also score wide-band PESQ (slow-ish).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch threads while enhancing (the real-time factor is measured with these).")
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the results as JSON.")
def eval_enhancer(enhancer_names, checkpoint, speech, speech_root, all_speakers, noise, noise_root, options, snrs,
                  per_snr, max_seconds, seed, pesq, threads, json_out) -> None:
    """SI-SDR, STOI and PESQ of noisy vs enhanced speech per SNR, and each enhancer's real-time factor.

    Every enhancer is scored on the same mixtures: utterances of held-out speakers (those every
    checkpoint records as held out, ``meta.data.speakers.test``, else the default speaker split of
    ``bench train``; or every speaker with --all-speakers) mixed with the noise source's *test* part.
    The real-time factor is CPU seconds of this process per second of audio (one core with
    --threads 1; set OMP_NUM_THREADS=1 too).
    """
    import os
    import platform
    import sys

    from .training import EVAL_SNRS, SpeechPool, cache_clips, fixed_mixtures

    opts = _corpus_options(options, speech, speech_root, noise, noise_root)
    reg = _registry()
    names = list(dict.fromkeys(enhancer_names))
    enhs: dict[str, Any] = {}
    took_checkpoint = False
    for name in names:
        eopts = dict(opts.get(name, {}))
        if checkpoint and "checkpoint" in reg.get("enhancer", name).Config.model_fields:
            eopts["checkpoint"] = checkpoint
            took_checkpoint = True
        enh = reg.create("enhancer", name, eopts)
        if enh.requires_training and not enh.is_trained():
            raise BenchError(getattr(enh, "untrained_message", lambda n=name: f"enhancer {n!r} is not trained")())
        enh.enhance(np.zeros(1600, np.float32))  # loads weights (and their metadata) outside the timing
        enhs[name] = enh
    if checkpoint and not took_checkpoint:
        raise ConfigError(f"none of {', '.join(names)} takes a checkpoint; drop --checkpoint")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    utts = reg.create("dataset", speech, opts.get(speech, {})).utterances()
    test = _select_speakers(enhs, utts, all_speakers)
    if not test:
        raise ConfigError("no held-out test speakers found in this corpus; with a corpus no enhancer trained on, "
                          "pass --all-speakers")
    ns = reg.create("noise_source", noise, opts.get(noise, {}))
    pool = SpeechPool.load(test)
    snr_list = list(snrs) or list(EVAL_SNRS)
    exs = fixed_mixtures(pool, cache_clips(ns.clips("test")), snr_list, seed=seed, source=ns.name,
                         per_snr=per_snr, max_seconds=max_seconds)
    result = evaluate_enhancers(enhs, exs, pesq=pesq, progress=True)
    click.echo(f"{', '.join(names)}: {len(exs) // len(snr_list)} utterances per SNR from {len(pool.ids)} "
               f"({len(set(pool.speakers))} speakers) of {speech}, {ns.name} test part, seed {seed}")
    click.echo(format_enhancer_table(result))
    if json_out:
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        doc = {
            "speech": {"dataset": speech, "all_speakers": all_speakers, "speakers": sorted(set(pool.speakers)),
                       "utterances_per_snr": len(exs) // len(snr_list), "max_seconds": max_seconds,
                       "utterances": sorted({ex.speech_id for ex in exs})},
            "noise_clips": sorted({ex.clip_id for ex in exs}),
            "noise": {"source": ns.name, "part": "test", "options": ns.identity()["config"]},
            "snrs": snr_list, "seed": seed, "metrics": ["sisdr", "stoi"] + (["pesq"] if pesq else []),
            "rtf": {"definition": "enhancer CPU seconds (this process) per second of audio", "threads": threads,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average": [round(v, 2) for v in load] if load else None,
                    "machine": platform.machine(), "processor": platform.processor() or platform.machine()},
            **result,
        }
        Path(json_out).write_text(json.dumps(doc, indent=2, default=str))


@click.group()
def _main() -> None:
    """Stand-alone entry for ``python -m ser_bench.cli_enhance`` (the same commands as ``bench``)."""


_main.add_command(train)
_main.add_command(enhance)
_main.add_command(eval_enhancer)

if __name__ == "__main__":
    _main()
