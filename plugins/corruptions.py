"""Built-in corruptions: additive noise, reverberation (simulated rooms, measured RIRs), babble,
and channels (telephone band with G.711 mu-law, clipping, a lossy codec).

Each is one :class:`~ser_bench.Corruption` plugin; a run names a step ``NAME(param=value, ...)``
and chains steps with ``+`` (:mod:`ser_bench.corruptions`). Level definitions:

* ``noise``, ``babble``: SNR = 10 log10(mean(s^2) / mean(n^2)) over the whole utterance, s the
  speech entering the step (the reverberant speech in ``reverb(...)+noise(...)``), n what is added;
  the sum is scaled down (both alike, SNR unchanged) only if it would clip, as plain mixing does.
* ``reverb``, ``rir``, ``telephone``, ``codec``: the output has the input's mean power (only the
  corruption changes, not the level), and is time-aligned with the input: reverberation is
  convolved from the RIR's direct path on (no delay), the codec's delay is removed.
* ``clipping``: samples beyond ``fraction`` x the peak are clipped; no level change.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ser_bench import PluginConfig, hookimpl
from ser_bench.audio import load_audio
from ser_bench.corruptions import (
    drr_db,
    match_level,
    peak_limit,
    reverberate,
    schroeder_rt60,
)
from ser_bench.errors import AudioError, ConfigError
from ser_bench.interfaces import SAMPLE_RATE, Corruption, file_fingerprint, stable_hash
from ser_bench.mixing import mix, noise_segment, power


class AdditiveNoise(Corruption):
    """Additive noise from a noise source at an SNR: exactly the harness's mixing (same stream)."""

    name: ClassVar[str] = "noise"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "additive noise from a noise source at an SNR (the harness's mixing)"
    category: ClassVar[str] = "additive-noise"
    severity: ClassVar[str] = "snr"
    milder_when_larger: ClassVar[bool] = True

    class Params(PluginConfig):
        snr: float = Field(..., ge=-30, le=60, description="SNR in dB")
        source: str = Field(..., description="noise source (one of the run's noise_sources)")

    def key_parts(self, params: Any, ctx: Any) -> list[Any]:
        return [ctx.identity("noise_source", params.source)]

    def apply(self, x, params, rng, ctx):
        src = ctx.noise_source(params.source)
        m = mix(x, src.clips("test"), params.snr, key=ctx.key, seed=ctx.seed, source=params.source,
                speech_name=ctx.speech_name)
        return m.noisy, {"snr": params.snr, "source": params.source, "clip": m.clip_id, "offset": m.offset,
                         "gain": m.gain}


# ----------------------------------------------------------------------------- reverberation


#: Image-source order cap per 0.5 s of RT60: beyond it the sources arrive after the RIR has
#: decayed by > 40 dB in the rooms drawn here; the decay correction then sets the measured RT60.
ISM_ORDER_CAP = 40
#: The measured RT60 of every simulated RIR is within this fraction of the target (else the room
#: is drawn again).
RT60_TOLERANCE = 0.05
#: Rooms drawn for one utterance before giving up.
MAX_ROOM_DRAWS = 5


class SimulatedReverb(Corruption):
    """Reverberation in a simulated shoebox room (pyroomacoustics image-source method).

    Per utterance, from the step's own random stream: the room size (uniform between ``size_min``
    and ``size_max``), the microphone position (0.5 m from the walls), the source direction and
    the source-microphone distance (uniform in [``distance_min``, ``distance_max``], shortened if
    the room is too small). Wall absorption and image order come from Sabine's formula for the
    RT60 (``pyroomacoustics.inverse_sabine``, order capped at 40 per 0.5 s of RT60); the image-source RIR's decay
    is then corrected so that its RT60 measured by Schroeder backward integration (T30) is the
    target within 5 % (image-source rooms decay faster or slower than Sabine predicts, by up to
    40 %). Recorded per utterance: room size, positions, distance, absorption, order, the RT60
    before and after the correction, the DRR.
    """

    name: ClassVar[str] = "reverb"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "reverberation in a simulated room (image-source method) at an RT60"
    category: ClassVar[str] = "reverberation"
    severity: ClassVar[str] = "rt60"

    class Params(PluginConfig):
        rt60: float = Field(..., gt=0.1, le=2.0, description="reverberation time in s")
        size_min: tuple[float, float, float] = Field((3.0, 3.0, 2.5), description="smallest room (m)")
        size_max: tuple[float, float, float] = Field((8.0, 6.0, 3.5), description="largest room (m)")
        distance_min: float = Field(1.0, gt=0.1, description="smallest source-microphone distance (m)")
        distance_max: float = Field(3.0, gt=0.1, description="largest source-microphone distance (m)")

    def apply(self, x, params, rng, ctx):
        h, info = self.rir(params, rng)
        return reverberate(x, h).astype(np.float32), info

    def rir(self, params: Any, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """One room's RIR (direct path first) and what was drawn. A room whose RIR cannot be
        brought to the RT60 (rare: a truncated image-source response) is drawn again, up to
        :data:`MAX_ROOM_DRAWS` times, from the same stream (``redraws`` is recorded)."""
        last: AudioError | None = None
        for attempt in range(MAX_ROOM_DRAWS):
            try:
                h, info = self._room(params, rng)
                return h, {**info, "redraws": attempt}
            except AudioError as exc:
                last = exc
        raise AudioError(f"{last}; {MAX_ROOM_DRAWS} rooms were drawn: widen size_min / size_max") from None

    def _room(self, params: Any, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        try:
            import pyroomacoustics as pra
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ConfigError("corruption 'reverb' needs pyroomacoustics: pip install pyroomacoustics") from exc
        lo, hi = np.array(params.size_min), np.array(params.size_max)
        dims = rng.uniform(lo, np.maximum(hi, lo))
        margin = 0.5
        mic = rng.uniform(margin, dims - margin)
        want = float(rng.uniform(params.distance_min, max(params.distance_min, params.distance_max)))
        src, dist = None, want
        for _ in range(200):  # a direction (in the horizontal plane +-30 deg) that fits the distance
            az, el = rng.uniform(0, 2 * np.pi), rng.uniform(-np.pi / 6, np.pi / 6)
            cand = mic + dist * np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
            if np.all(cand > margin) and np.all(cand < dims - margin):
                src = cand
                break
            dist *= 0.97  # the room is too small for this distance in most directions
        if src is None:
            raise ConfigError(f"reverb: no source position {want:.2f} m from the microphone fits a {dims.round(2)} m "
                              "room; lower distance_max or raise size_min")
        e_abs, order = pra.inverse_sabine(params.rt60, dims)
        order = int(min(order, math.ceil(ISM_ORDER_CAP * max(1.0, params.rt60 / 0.5))))
        room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(float(e_abs)), max_order=order,
                           air_absorption=False)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
        h = h[max(0, int(np.argmax(np.abs(h)))):]
        h = _pad_tail(h, params.rt60)
        try:
            raw = schroeder_rt60(h)
        except ValueError as exc:
            raise AudioError(f"reverb: the image-source RIR cannot be measured ({exc})") from None
        h, measured = correct_decay(h, params.rt60)
        info = {"rt60": params.rt60, "room": [round(float(d), 3) for d in dims], "mic": [round(float(v), 3) for v in mic],
                "source": [round(float(v), 3) for v in src], "distance": round(float(np.linalg.norm(src - mic)), 3),
                "absorption": round(float(e_abs), 4), "max_order": order, "rt60_ism": round(raw, 3),
                "rt60_measured": round(measured, 3), "drr_db": round(drr_db(h), 2)}
        return h, info


def _pad_tail(h: np.ndarray, rt60: float) -> np.ndarray:
    """Zero-pad the RIR to 1.2 x RT60 (the correction multiplies the tail, which must exist)."""
    n = int(1.2 * rt60 * SAMPLE_RATE)
    return np.pad(h, (0, max(0, n - len(h))))


def correct_decay(h: np.ndarray, target: float, iters: int = 12) -> tuple[np.ndarray, float]:
    """Reshape ``h``'s exponential decay so its Schroeder RT60 is ``target`` (within
    :data:`RT60_TOLERANCE`): multiply by ``10 ** (-3 t (1/target - 1/measured))`` (amplitude; 60 dB
    of energy per RT60), re-measure, repeat. Returns the RIR and its measured RT60."""
    t = np.arange(len(h)) / SAMPLE_RATE
    try:
        measured = schroeder_rt60(h)
        for _ in range(iters):
            if abs(measured - target) <= 0.25 * RT60_TOLERANCE * target or not 0.2 < measured / target < 5:
                break
            h = h * 10.0 ** (-3.0 * t * (1.0 / target - 1.0 / measured))
            measured = schroeder_rt60(h)
    except ValueError as exc:  # the RIR does not decay far enough to be measured
        raise AudioError(f"reverb: the simulated room's RIR cannot be measured ({exc}) for an RT60 of {target:g} s") from None
    if abs(measured - target) > RT60_TOLERANCE * target:
        raise AudioError(f"reverb: the simulated room's RT60 came out {measured:.3f} s for a target of {target:g} s")
    return h, measured


class MeasuredRIR(Corruption):
    """Reverberation by measured room impulse responses: a folder of WAV/FLAC files, one drawn per
    utterance. Each RIR is convolved from its direct path (its largest peak) on, so the result is
    aligned with the clean speech; level matched. Recorded: the file, its RT60 (Schroeder T20,
    when it decays that far) and DRR."""

    name: ClassVar[str] = "rir"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "reverberation by measured RIRs from a folder of WAV files"
    category: ClassVar[str] = "reverberation"
    location_options: ClassVar[tuple[str, ...]] = ("root",)

    class Config(PluginConfig):
        root: Path = Field(..., description="folder of RIR audio files (WAV, FLAC), searched recursively")

    def files(self) -> list[Path]:
        if getattr(self, "_files", None) is None:
            root = Path(self.config.root).expanduser()
            if not root.is_dir():
                raise ConfigError(f"corruption 'rir': RIR folder {root} not found; set -o rir.root=FOLDER")
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
            if not files:
                raise ConfigError(f"corruption 'rir': no .wav or .flac files under {root}")
            self._files = files
        return self._files

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident["config"].pop("root", None)
        root = Path(self.config.root).expanduser()
        ident["rirs"] = stable_hash([[str(p.relative_to(root)), file_fingerprint(p)] for p in self.files()])
        return ident

    def apply(self, x, params, rng, ctx):
        files = self.files()
        path = files[int(rng.integers(0, len(files)))]
        h = load_audio(path).astype(np.float64)
        if not np.any(h):
            raise AudioError(f"{path}: the RIR is all zeros; remove it from the folder")
        h = h[np.argmax(np.abs(h)):]
        try:
            rt60 = round(schroeder_rt60(h, decay_db=20.0), 3)
        except ValueError:
            rt60 = None
        info = {"file": str(path.relative_to(Path(self.config.root).expanduser())), "rt60_measured": rt60,
                "drr_db": round(drr_db(h), 2)}
        return reverberate(x, h).astype(np.float32), info


# ----------------------------------------------------------------------------- babble


class Babble(Corruption):
    """Babble: ``talkers`` speakers of a clean speech corpus (default LibriSpeech), each a random
    utterance cropped (or looped) from a random offset to the utterance's length, each scaled to
    the same mean power, summed, and mixed with the speech at ``snr`` (the SNR definition of
    mixing). The corpus must not be a dataset under test, and the talkers are distinct speakers;
    ``exclude_speakers`` leaves more out. Recorded: the talkers' utterance ids and offsets."""

    name: ClassVar[str] = "babble"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "babble of N talkers from a clean speech corpus (LibriSpeech) at an SNR"
    category: ClassVar[str] = "competing-speech"
    severity: ClassVar[str] = "snr"
    milder_when_larger: ClassVar[bool] = True

    class Config(PluginConfig):
        corpus: str = Field("librispeech", description="dataset plugin of clean speech for the talkers")
        root: Path | None = Field(None, description="the corpus's root folder (its own `root` option)")
        exclude_speakers: tuple[str, ...] = Field((), description="speaker ids of the corpus to leave out")

    class Params(PluginConfig):
        snr: float = Field(..., ge=-30, le=60, description="speech-to-babble ratio in dB")
        talkers: int = Field(5, ge=3, le=8, description="number of talkers summed")

    def _corpus(self, registry: Any) -> Any:
        if getattr(self, "_ds", None) is None:
            if registry is None:
                from ser_bench.plugins import default_registry

                registry = default_registry()
            opts = {"root": str(self.config.root)} if self.config.root is not None else {}
            self._ds = registry.create("dataset", self.config.corpus, opts)
            by_spk: dict[str, list] = {}
            for u in self._ds.utterances():
                if u.speaker not in self.config.exclude_speakers:
                    by_spk.setdefault(u.speaker, []).append(u)
            self._by_spk = dict(sorted(by_spk.items()))
            self._audio: OrderedDict[str, np.ndarray] = OrderedDict()
        return self._ds

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        ident["config"].pop("root", None)
        ident["corpus"] = self._corpus(None).identity()
        return ident

    def _load(self, u: Any) -> np.ndarray:
        a = self._audio.get(u.id)
        if a is None:
            a = self._audio[u.id] = np.asarray(u.load(), dtype=np.float64)
            while len(self._audio) > 64:
                self._audio.popitem(last=False)
        return a

    def apply(self, x, params, rng, ctx):
        if self.config.corpus in (ctx.extra.get("datasets") or ()):
            raise ConfigError(f"babble: its talker corpus {self.config.corpus!r} is a dataset under test; its "
                              "speakers must not be the SER corpus's: choose another (-o babble.corpus=NAME)")
        self._corpus(ctx.extra.get("registry"))
        speakers = list(self._by_spk)
        if len(speakers) < params.talkers:
            raise ConfigError(f"babble: corpus {self.config.corpus!r} has {len(speakers)} speakers, fewer than "
                              f"talkers={params.talkers}")
        x = np.asarray(x, dtype=np.float64)
        chosen = rng.choice(len(speakers), size=params.talkers, replace=False)
        total = np.zeros(len(x))
        talkers = []
        for i in sorted(int(c) for c in chosen):
            utts = self._by_spk[speakers[i]]
            u = utts[int(rng.integers(0, len(utts)))]
            seg, off = noise_segment(self._load(u), len(x), rng)
            p = power(seg)
            if p == 0.0:
                continue
            total += seg / math.sqrt(p)
            talkers.append([u.id, int(off)])
        if power(total) == 0.0:
            raise AudioError(f"babble: every talker segment drawn for {ctx.speech_name} is silent")
        noise = total * math.sqrt(power(x) / (power(total) * 10.0 ** (params.snr / 10.0)))
        y, gain = peak_limit(x + noise)
        return y.astype(np.float32), {"snr": params.snr, "talkers": talkers, "corpus": self.config.corpus,
                                      "gain": gain}


# ----------------------------------------------------------------------------- channels


MU = 255.0


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """G.711 mu-law: 8-bit codes (0..255) of samples in [-1, 1] (continuous companding, mu = 255)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.clip(np.round((y + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    y = codes.astype(np.float64) / 255.0 * 2.0 - 1.0
    return np.sign(y) * ((1.0 + MU) ** np.abs(y) - 1.0) / MU


class Telephone(Corruption):
    """Telephone channel: resampled to 8 kHz, band-limited to 300-3400 Hz (zero-phase 4th-order
    Butterworth, no delay), G.711 mu-law (8 bit), back to 16 kHz; level matched. Peak-normalised to
    0.99 before the codec (mu-law clips at full scale) and restored after."""

    name: ClassVar[str] = "telephone"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "telephone channel: 8 kHz, 300-3400 Hz, G.711 mu-law"
    category: ClassVar[str] = "channel"

    class Params(PluginConfig):
        low_hz: float = Field(300.0, gt=0, description="band's lower edge (Hz)")
        high_hz: float = Field(3400.0, lt=4000, description="band's upper edge (Hz)")
        mulaw: bool = Field(True, description="G.711 mu-law 8-bit coding")

    def apply(self, x, params, rng, ctx):
        import soxr
        from scipy.signal import butter, sosfiltfilt

        x = np.asarray(x, dtype=np.float64)
        y = soxr.resample(x, SAMPLE_RATE, 8000, quality="VHQ")
        sos = butter(4, [params.low_hz, params.high_hz], btype="bandpass", fs=8000, output="sos")
        y = sosfiltfilt(sos, y)
        if params.mulaw:
            scale = max(float(np.max(np.abs(y))), 1e-9) / 0.99
            y = mulaw_decode(mulaw_encode(y / scale)) * scale
        y = soxr.resample(y, 8000, SAMPLE_RATE, quality="VHQ")
        y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]
        y, _ = peak_limit(match_level(y, x))
        return y.astype(np.float32), {"band_hz": [params.low_hz, params.high_hz], "mulaw": params.mulaw}


class Clipping(Corruption):
    """Hard clipping at ``fraction`` of the utterance's peak (smaller fraction = harsher)."""

    name: ClassVar[str] = "clipping"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "hard clipping at a fraction of the peak"
    category: ClassVar[str] = "channel"
    severity: ClassVar[str] = "fraction"
    milder_when_larger: ClassVar[bool] = True

    class Params(PluginConfig):
        fraction: float = Field(..., gt=0, le=1, description="clipping level as a fraction of the peak")

    def apply(self, x, params, rng, ctx):
        x = np.asarray(x, dtype=np.float64)
        t = params.fraction * float(np.max(np.abs(x)))
        y = np.clip(x, -t, t)
        return y.astype(np.float32), {"fraction": params.fraction,
                                      "clipped_share": round(float(np.mean(np.abs(x) >= t)), 4)}


CODECS = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg")}


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ConfigError("corruption 'codec' needs the ffmpeg binary of imageio-ffmpeg: "
                          "pip install 'ser-bench[codec]'") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def align(y: np.ndarray, x: np.ndarray, max_lag: int) -> tuple[np.ndarray, int]:
    """``y`` shifted by the lag (within +-``max_lag``) that best correlates it with ``x``, cropped or
    padded to ``len(x)``; returns it and the lag (positive: ``y`` was late)."""
    from scipy.signal import correlate

    n = len(x)
    c = correlate(np.pad(y, (0, max(0, n - len(y))))[: n + max_lag], x, mode="full", method="fft")
    mid = n - 1
    lo, hi = max(0, mid - max_lag), mid + max_lag + 1
    lag = int(np.argmax(c[lo:hi]) + lo - mid)
    z = y[lag:] if lag >= 0 else np.pad(y, (-lag, 0))
    return np.pad(z, (0, max(0, n - len(z))))[:n], lag


class Codec(Corruption):
    """A lossy codec at a low bitrate (MP3 or Opus through the ffmpeg binary of ``imageio-ffmpeg``:
    ``pip install 'ser-bench[codec]'``), decoded to 16 kHz, the codec's delay removed by
    cross-correlation (within 100 ms), level matched."""

    name: ClassVar[str] = "codec"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "lossy codec (mp3 / opus via imageio-ffmpeg) at a bitrate"
    category: ClassVar[str] = "channel"
    severity: ClassVar[str] = "bitrate"
    milder_when_larger: ClassVar[bool] = True

    class Params(PluginConfig):
        codec: Literal["mp3", "opus"] = Field("mp3", description="mp3 (libmp3lame) or opus (libopus)")
        bitrate: int = Field(16, ge=6, le=320, description="bitrate in kbit/s")

    def apply(self, x, params, rng, ctx):
        from ser_bench.audio import write_audio

        exe = ffmpeg_exe()
        lib, ext = CODECS[params.codec]
        x = np.asarray(x, dtype=np.float64)
        tmp = Path(tempfile.mkdtemp(prefix="ser-bench-codec-"))
        try:
            src, enc = tmp / "in.wav", tmp / f"out.{ext}"
            write_audio(src, x.astype(np.float32))
            extra = ["-ar", "48000"] if params.codec == "opus" else []
            for cmd in ([exe, "-nostdin", "-y", "-loglevel", "error", "-i", str(src), "-c:a", lib,
                         "-b:a", f"{params.bitrate}k", *extra, str(enc)],):
                r = subprocess.run(cmd, capture_output=True)
                if r.returncode:
                    raise AudioError(f"codec {params.codec} at {params.bitrate} kbit/s failed: "
                                     f"{r.stderr.decode(errors='replace')[-300:]}")
            r = subprocess.run([exe, "-nostdin", "-loglevel", "error", "-i", str(enc), "-f", "f32le", "-ac", "1",
                                "-ar", str(SAMPLE_RATE), "-"], capture_output=True)
            if r.returncode:
                raise AudioError(f"decoding {params.codec} failed: {r.stderr.decode(errors='replace')[-300:]}")
            y = np.frombuffer(r.stdout, dtype=np.float32).astype(np.float64)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        y, lag = align(y, x, max_lag=SAMPLE_RATE // 10)
        y, _ = peak_limit(match_level(y, x))
        return y.astype(np.float32), {"codec": params.codec, "bitrate": params.bitrate, "delay_samples": lag}


@hookimpl
def register_corruptions(register):
    register("noise", AdditiveNoise)
    register("reverb", SimulatedReverb)
    register("rir", MeasuredRIR)
    register("babble", Babble)
    register("telephone", Telephone)
    register("clipping", Clipping)
    register("codec", Codec)
