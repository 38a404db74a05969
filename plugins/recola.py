"""RECOLA in the AVEC 2016 layout: continuous arousal (or valence) every 40 ms.

Layout (as distributed for the AVEC 2016 challenge)::

    ROOT/recordings_audio/{train,dev,test}_{1..9}.wav
    ROOT/ratings_gold_standard/arousal/{train,dev,test}_{1..9}.arff
    ROOT/ratings_gold_standard/valence/...            (only with dimension="valence")

Each ARFF holds ``Instance_name, frameTime, GoldStandard``, one row per 40 ms from 0 s. Labels
become :class:`ser_bench.interfaces.TimeSeries` with ``hop_s=0.04``; each recording is one
utterance and one speaker (RECOLA has one subject per recording).

Official partitions: train and dev always carry gold standards; the AVEC 2016 test labels were
never released. ``test_partition="auto"`` therefore uses the official test partition only when
every test recording has its gold standard, and otherwise lets **dev serve as test** (a warning
is logged and :attr:`RecolaDataset.notes` says so). Then there is no validation partition, and
models hold out part of train themselves (``SERModel.fit`` gets ``valid=None``).

:func:`write_synthetic_recola` writes a small synthetic corpus in exactly this layout (arousal a
smooth function of the loudness and pitch of a synthetic voice); tests, suites and benchmarks
use it because no real RECOLA copy is available. ``python -m ser_bench_plugins.recola DIR`` writes one.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from ser_bench.errors import PluginError
from ser_bench.hookspecs import hookimpl
from ser_bench.interfaces import SAMPLE_RATE, Dataset, TimeSeries, Utterance

from .corpus_utils import BadEntries, CorpusConfig, probe_audio, require_root

log = logging.getLogger("ser_bench.datasets")

HOP_S = 0.04
PARTITIONS = ("train", "dev", "test")
NAME_RE = re.compile(r"^(?P<part>train|dev|test)_(?P<num>\d+)$")
LAYOUT = (
    "ROOT/recordings_audio/{train,dev,test}_N.wav and "
    "ROOT/ratings_gold_standard/<dimension>/{train,dev,test}_N.arff (AVEC 2016)"
)
DEV_AS_TEST_NOTE = (
    "dev serves as test (the official RECOLA test labels are missing); there is no validation "
    "partition, so models hold out part of train for early stopping"
)


class LabelFileError(ValueError):
    """An ARFF gold-standard file that cannot be used (the message names the line and the problem)."""


def read_gold_standard(path: str | Path, hop_s: float = HOP_S) -> np.ndarray:
    """Read one AVEC 2016 gold-standard ARFF: the ``GoldStandard`` column, one value per ``hop_s``.

    Accepts ``%`` comments, blank lines, quoted or bare instance names and any attribute order,
    as long as ``frameTime`` and ``GoldStandard`` are declared. Checks that ``frameTime`` starts at
    0 and advances by ``hop_s`` (to within 1 ms) and that every value is finite.

    Raises:
        LabelFileError: naming the line and the problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LabelFileError(f"cannot read the file ({exc})") from None
    attrs: list[str] = []
    in_data = False
    times: list[float] = []
    values: list[float] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if not in_data:
            if low.startswith("@attribute"):
                parts = line.split(None, 2)
                if len(parts) < 2:
                    raise LabelFileError(f"line {lineno}: malformed @attribute declaration {line!r}")
                attrs.append(parts[1].strip("'\"").lower())
            elif low.startswith("@data"):
                in_data = True
            elif not low.startswith("@relation"):
                raise LabelFileError(f"line {lineno}: unexpected header line {line!r} (not ARFF?)")
            continue
        if "frametime" not in attrs or "goldstandard" not in attrs:
            raise LabelFileError(
                f"the header declares {attrs or 'no attributes'}; expected "
                "Instance_name, frameTime and GoldStandard"
            )
        cells = [c.strip().strip("'\"") for c in line.split(",")]
        if len(cells) != len(attrs):
            raise LabelFileError(f"line {lineno}: {len(cells)} fields, expected {len(attrs)} ({line!r})")
        try:
            t = float(cells[attrs.index("frametime")])
            v = float(cells[attrs.index("goldstandard")])
        except ValueError:
            raise LabelFileError(f"line {lineno}: non-numeric frameTime or GoldStandard ({line!r})") from None
        if not np.isfinite(v):
            raise LabelFileError(f"line {lineno}: GoldStandard is {cells[attrs.index('goldstandard')]!r}")
        times.append(t)
        values.append(v)
    if not in_data:
        raise LabelFileError("no @data section (not an ARFF file?)")
    if len(values) < 2:
        raise LabelFileError(f"{len(values)} data rows; a gold standard needs one row per {hop_s * 1000:.0f} ms")
    t = np.asarray(times)
    if abs(t[0]) > 1e-3:
        raise LabelFileError(f"frameTime starts at {t[0]:g} s, expected 0")
    steps = np.diff(t)
    bad = np.flatnonzero(np.abs(steps - hop_s) > 1e-3)
    if bad.size:
        i = int(bad[0])
        raise LabelFileError(
            f"frameTime jumps from {t[i]:g} to {t[i + 1]:g} s at data row {i + 2}; expected one row "
            f"every {hop_s:g} s"
        )
    return np.asarray(values, dtype=np.float32)


class RecolaDataset(Dataset):
    """RECOLA (AVEC 2016 layout): 27 five-minute recordings, continuous arousal every 40 ms."""

    name: ClassVar[str] = "recola"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "RECOLA, AVEC 2016 layout: continuous arousal (40 ms), official train/dev/test; "
        "dev serves as test when test labels are missing"
    )
    task: ClassVar[Literal["regression"]] = "regression"
    has_partitions: ClassVar[bool] = True

    class Config(CorpusConfig):
        """Options (besides root, on_bad_entry and check_audio).

        Attributes:
            dimension: which gold standard to read: "arousal" (the paper) or "valence".
            test_partition: "auto": the official test partition if every test recording has a
                gold standard, else dev serves as test (with a warning and a note). "test":
                require the test labels. "dev": dev serves as test even when test labels exist.
        """

        dimension: Literal["arousal", "valence"] = "arousal"
        test_partition: Literal["auto", "test", "dev"] = "auto"

    #: Whether the last load_utterances() let dev serve as test.
    dev_as_test: bool = False

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        root = require_root(cfg.root, self.name, LAYOUT)
        audio_dir = root / "recordings_audio"
        label_dir = root / "ratings_gold_standard" / cfg.dimension
        for folder in (audio_dir, label_dir):
            if not folder.is_dir():
                raise PluginError(
                    f"dataset {self.name!r}: folder {folder} is missing; expected {LAYOUT}. "
                    f"Point --data-root {self.name}=PATH at the folder holding recordings_audio/."
                )
        wavs = {p.stem: p for p in sorted(audio_dir.glob("*.wav")) if NAME_RE.match(p.stem)}
        arffs = {p.stem: p for p in sorted(label_dir.glob("*.arff")) if NAME_RE.match(p.stem)}
        if not wavs:
            raise PluginError(
                f"dataset {self.name!r}: no recordings named {{train,dev,test}}_N.wav in {audio_dir}; "
                f"expected {LAYOUT}"
            )
        by_part = {p: sorted((s for s in wavs if s.startswith(p + "_")), key=_order) for p in PARTITIONS}
        for part in ("train", "dev"):
            if not by_part[part]:
                raise PluginError(
                    f"dataset {self.name!r}: no {part}_N.wav recordings in {audio_dir}; the official "
                    f"train and dev partitions are both needed ({LAYOUT})"
                )
        bad = BadEntries(self.name, cfg.on_bad_entry)
        for stem in sorted(set(arffs) - set(wavs), key=_order):
            bad.add(arffs[stem], f"no matching recording {audio_dir / (stem + '.wav')}")
        missing_test = [s for s in by_part["test"] if s not in arffs]
        self.dev_as_test = self._dev_as_test(by_part["test"], missing_test, label_dir)

        out: list[Utterance] = []
        for part in PARTITIONS:
            if part == "test" and self.dev_as_test:
                continue  # unlabelled (or deliberately unused) official test recordings
            for stem in by_part[part]:
                wav = wavs[stem]
                if stem not in arffs:
                    bad.add(wav, f"no gold standard {label_dir / (stem + '.arff')}")
                    continue
                try:
                    values = read_gold_standard(arffs[stem])
                except LabelFileError as exc:
                    bad.add(arffs[stem], f"unusable gold standard: {exc}")
                    continue
                if cfg.check_audio:
                    probe = probe_audio(wav)
                    if isinstance(probe, str):
                        bad.add(wav, probe)
                        continue
                partition = "test" if (self.dev_as_test and part == "dev") else part
                out.append(
                    Utterance(
                        id=stem,
                        speaker=stem,  # one subject per recording
                        label=TimeSeries(values, hop_s=HOP_S),
                        partition=partition,
                        path=wav,
                    )
                )
        bad.finish(fix=f"Expected {LAYOUT}.")
        self.notes = DEV_AS_TEST_NOTE if self.dev_as_test else ""
        return out

    def _dev_as_test(self, test: list[str], missing: list[str], label_dir: Path) -> bool:
        mode = self.config.test_partition
        if mode == "dev":
            return True
        if mode == "test":
            if not test or missing:
                names = ", ".join(missing) or "no test_N.wav recordings"
                raise PluginError(
                    f"dataset {self.name!r}: test_partition='test' needs the test gold standards, but "
                    f"these are missing from {label_dir}: {names}. Add them, or use "
                    f"{self.name}.test_partition=auto to let dev serve as test."
                )
            return False
        if test and not missing:
            return False
        log.warning(
            "dataset %r: %s (%d of %d test recordings lack a gold standard in %s)",
            self.name, DEV_AS_TEST_NOTE, len(missing), len(test), label_dir,
        )
        return True


def _order(stem: str) -> tuple[int, int]:
    m = NAME_RE.match(stem)
    assert m is not None
    return PARTITIONS.index(m["part"]), int(m["num"])


# --------------------------------------------------------------------------- synthetic corpus


def _smooth(n: int, rng: np.random.Generator, periods_s: tuple[float, float] = (3.0, 20.0)) -> np.ndarray:
    """A smooth zero-mean, unit-variance process over ``n`` 40 ms frames: a few slow sinusoids."""
    t = np.arange(n) * HOP_S
    z = np.zeros(n)
    for _ in range(6):
        period = rng.uniform(*periods_s)
        z += rng.normal() * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return (z - z.mean()) / (z.std() + 1e-9)


def _speech_gate(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Talk spurts (1-3 s) of syllables (~4 Hz) separated by pauses (0.2-0.8 s), as a 0..1 envelope."""
    gate = np.zeros(n)
    pos = int(rng.uniform(0.0, 0.3) * sr)
    while pos < n:
        spurt = int(rng.uniform(1.0, 3.0) * sr)
        seg = np.arange(min(spurt, n - pos)) / sr
        rate = rng.uniform(3.0, 5.0)
        gate[pos : pos + len(seg)] = np.sin(np.pi * rate * seg) ** 2 * 0.8 + 0.2
        pos += spurt + int(rng.uniform(0.2, 0.8) * sr)
    return gate


def synthetic_recording(
    seconds: float, seed: int, *, sr: int = SAMPLE_RATE, label_delay_s: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic recording and its arousal trace (one value per 40 ms, AVEC length).

    A harmonic "voice" (f0 around 150 Hz, 12 harmonics) speaks in talk spurts. Two smooth latent
    processes drive it: ``zl`` sets the loudness (+-6 dB per unit) and ``zp`` the pitch (a third of
    an octave per unit). Arousal is ``tanh(0.7 zl + 0.5 zp)``, delayed by ``label_delay_s`` like a
    human annotator's reaction. The trace has ``floor(seconds / 0.04) + 1`` values, as in AVEC 2016
    (frameTime 0 .. duration inclusive).

    Returns:
        (audio float32 at ``sr``, arousal float32).
    """
    rng = np.random.default_rng([seed, 20160320])
    n = int(round(seconds * sr))
    n_frames = int(np.floor(seconds / HOP_S + 1e-9)) + 1
    zl = _smooth(n_frames, rng)
    zp = _smooth(n_frames, rng)
    arousal = np.tanh(0.7 * zl + 0.5 * zp)
    delay = int(round(label_delay_s / HOP_S))
    label = np.concatenate([np.full(delay, arousal[0]), arousal[: n_frames - delay]]) if delay else arousal

    t_frames = np.arange(n_frames) * HOP_S
    t = np.arange(n) / sr
    f0 = rng.uniform(135.0, 165.0) * 2.0 ** (np.interp(t, t_frames, zp) / 3.0)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 13))
    voice /= np.sqrt(np.mean(voice**2))
    gain = 10.0 ** ((-26.0 + 6.0 * np.interp(t, t_frames, zl)) / 20.0)
    audio = voice * gain * _speech_gate(n, sr, rng) + rng.normal(0.0, 10 ** (-60 / 20), n)
    return audio.astype(np.float32), label.astype(np.float32)


def write_arff(path: str | Path, name: str, values: np.ndarray, hop_s: float = HOP_S) -> None:
    """Write a gold-standard trace as an AVEC 2016 ARFF (Instance_name, frameTime, GoldStandard)."""
    lines = [
        "@relation GOLDSTANDARD",
        "",
        "@attribute Instance_name string",
        "@attribute frameTime numeric",
        "@attribute GoldStandard numeric",
        "",
        "@data",
        "",
    ]
    lines += [f"'{name}',{i * hop_s:.2f},{float(v):.6f}" for i, v in enumerate(values)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_synthetic_recola(
    root: str | Path,
    *,
    n_train: int = 3,
    n_dev: int = 2,
    n_test: int = 2,
    seconds: float = 30.0,
    seed: int = 0,
    test_labels: bool = True,
    label_delay_s: float = 0.4,
    sr: int = SAMPLE_RATE,
) -> Path:
    """Write a small synthetic RECOLA in the exact AVEC 2016 layout; return ``root``.

    Every recording is made by :func:`synthetic_recording` (arousal a smooth function of the
    loudness and pitch of a synthetic voice, delayed by ``label_delay_s``). Arousal is written
    under ``ratings_gold_standard/arousal`` and, as a second dimension, its negation under
    ``.../valence`` (only so that the option has something to read). With ``test_labels=False``
    the test gold standards are left out, as in the AVEC 2016 release.

    Args:
        root: the folder to create (may exist).
        n_train, n_dev, n_test: recordings per partition (RECOLA has 9 each).
        seconds: duration of each recording (RECOLA: 300).
        seed: recordings differ by seed and index; the same arguments write the same files.
        sr: sample rate of the written wavs (the loader resamples to 16 kHz).
    """
    from ser_bench.audio import write_audio

    root = Path(root)
    audio_dir = root / "recordings_audio"
    dims = {d: root / "ratings_gold_standard" / d for d in ("arousal", "valence")}
    for folder in (audio_dir, *dims.values()):
        folder.mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "dev": n_dev, "test": n_test}
    for p_i, (part, count) in enumerate(counts.items()):
        for i in range(1, count + 1):
            stem = f"{part}_{i}"
            audio, label = synthetic_recording(
                seconds, seed * 1000 + p_i * 100 + i, sr=sr, label_delay_s=label_delay_s
            )
            write_audio(audio_dir / f"{stem}.wav", audio, sr=sr)
            if part == "test" and not test_labels:
                continue
            write_arff(dims["arousal"] / f"{stem}.arff", stem, label)
            write_arff(dims["valence"] / f"{stem}.arff", stem, -label)
    return root


@hookimpl
def register_datasets(register) -> None:
    register("recola", RecolaDataset)


if __name__ == "__main__":  # python -m ser_bench_plugins.recola DIR [seconds]
    import sys

    if len(sys.argv) < 2:
        sys.exit("usage: python -m ser_bench_plugins.recola DIR [SECONDS_PER_RECORDING]")
    out = write_synthetic_recola(sys.argv[1], seconds=float(sys.argv[2]) if len(sys.argv) > 2 else 30.0)
    print(f"wrote a synthetic RECOLA (AVEC 2016 layout) to {out}")
