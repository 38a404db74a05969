"""``bench train`` and ``bench enhance``: train an enhancer, enhance audio files.

Registered on the ``bench`` group by :mod:`harness.cli` (``cli.add_command(train)`` ...).

\b
  bench train rescnn --speech librispeech --speech-root ../shared/data/librispeech \\
        --noise folder --noise-root ../shared/data/noise --out rescnn.pt --minutes 30
  bench enhance --enhancer rescnn noisy.wav --out enhanced/
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
@click.option("--crop-frames", type=int, help="rescnn dense: frames per training crop.")
@click.option("--loss", type=click.Choice(["logmag", "compressed"]),
              help="rescnn: log-magnitude MSE (paper) or compressed-magnitude MSE.")
@click.option("--valid-fraction", type=float, help="Share of speakers held out for validation (default 0.1).")
@click.option("--test-fraction", type=float,
              help="Share of speakers held out for testing (default 0.2; 0: evaluate on another corpus).")
@click.option("--valid-every", type=int, help="Validate and checkpoint every N steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, help="torch threads (default: torch's choice).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train(enhancer, speech, speech_root, noise, noise_root, options, out, resume, model, width, steps, minutes,
          batch, lr, optimizer, schedule, snrs, p_clean, crop_frames, loss, valid_fraction, test_fraction, valid_every,
          seed, threads, quiet) -> None:
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
                 "loss": loss, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                 "valid_every": valid_every, "threads": threads}.items():
        if v is not None:
            kwargs[k] = v
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
@click.option("--enhancer", "-e", required=True, help="Enhancer plugin name (bench ls enhancers).")
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


@click.command(name="eval-enhancer")
@click.option("--enhancer", "-e", required=True, help="Enhancer plugin name.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Weights (enhancers with a checkpoint option).")
@click.option("--speech", required=True, help="Clean-speech dataset plugin; its held-out *test* speakers are used.")
@click.option("--speech-root", type=click.Path(file_okay=False), help="Shorthand for -o SPEECH.root=PATH.")
@click.option("--noise", required=True, help="Noise source plugin; its *test* part is used.")
@click.option("--noise-root", type=click.Path(file_okay=False), help="Shorthand for -o NOISE.root=PATH.")
@click.option("--option", "-o", "options", multiple=True, metavar="PLUGIN.KEY=VALUE", help=OPTION_HELP)
@click.option("--snr", "snrs", multiple=True, type=float, help="SNR in dB (repeatable). Default: -5 0 5 10 15 20.")
@click.option("--per-snr", type=int, default=40, show_default=True, help="Utterances per SNR.")
@click.option("--max-seconds", type=float, default=8.0, show_default=True, help="Crop utterances to this length.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Mixing seed.")
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the rows as JSON.")
def eval_enhancer(enhancer, checkpoint, speech, speech_root, noise, noise_root, options, snrs, per_snr, max_seconds,
                  seed, json_out) -> None:
    """SI-SDR and STOI of noisy vs enhanced speech on held-out speakers and test-part noise, per SNR.

    Test speakers are those a checkpoint records as held out (``meta.data.speakers.test``), every
    speaker of a corpus the checkpoint did not train on, else the default split of ``bench train``.
    """
    from .training import EVAL_SNRS, SpeechPool, evaluate_enhancer, fixed_mixtures, format_table, split_speakers

    opts = _corpus_options(options, speech, speech_root, noise, noise_root)
    reg = _registry()
    eopts = dict(opts.get(enhancer, {}))
    if checkpoint:
        eopts["checkpoint"] = checkpoint
    enh = reg.create("enhancer", enhancer, eopts)
    if enh.requires_training and not enh.is_trained():
        raise BenchError(getattr(enh, "untrained_message", lambda: f"enhancer {enhancer!r} is not trained")())
    enh.enhance(np.zeros(1600, np.float32))  # loads weights (and their metadata)
    utts = reg.create("dataset", speech, opts.get(speech, {})).utterances()
    data = (getattr(enh, "meta", None) or {}).get("data", {})
    trained_on = data.get("speech", {}).get("dataset")
    if trained_on is not None and trained_on != speech:
        test = list(utts)  # a corpus the enhancer never trained on: every speaker is held out
    else:
        held = data.get("speakers", {}).get("test")
        test = [u for u in utts if u.speaker in set(held)] if held else split_speakers(utts)["test"]
    if not test:
        raise ConfigError("no held-out test speakers found in this corpus")
    ns = reg.create("noise_source", noise, opts.get(noise, {}))
    from .training import cache_clips

    pool = SpeechPool.load(test)
    exs = fixed_mixtures(pool, cache_clips(ns.clips("test")), list(snrs) or list(EVAL_SNRS), seed=seed,
                         source=ns.name, per_snr=per_snr, max_seconds=max_seconds)
    rows = evaluate_enhancer(enh.enhance, exs, progress=True)
    click.echo(f"{enhancer}: {len(pool.ids)} utterances of {len(set(pool.speakers))} held-out speakers, "
               f"{ns.name} test part, seed {seed}")
    click.echo(format_table(rows))
    if json_out:
        Path(json_out).write_text(json.dumps({"rows": rows, "speakers": sorted(set(pool.speakers)),
                                              "utterances": len(pool.ids), "seed": seed}, indent=2))


@click.group()
def _main() -> None:
    """Stand-alone entry for ``python -m harness.cli_enhance`` (the same commands as ``bench``)."""


_main.add_command(train)
_main.add_command(enhance)
_main.add_command(eval_enhancer)

if __name__ == "__main__":
    _main()
