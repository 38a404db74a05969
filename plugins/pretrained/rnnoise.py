"""``rnnoise``: RNNoise (Valin, 2018), the recurrent noise suppressor used in WebRTC-era VoIP stacks.

The ``pyrnnoise`` wheel ships ``librnnoise`` with its weights compiled in; this module calls the
C API (``rnnoise_create(NULL)``, ``rnnoise_process_frame(state, out, in)``,
``rnnoise_destroy``) through the ctypes handle pyrnnoise opens, on float frames in 16-bit
scale (pyrnnoise's own frame helper would round them to int16 and allocate per frame).

Signal path: 16 kHz -> 48 kHz (``upsampler``, default soxr: on held-out speech RNNoise scores within
0.1 dB through every path of :data:`.common.UPSAMPLERS`) -> 480-sample frames, zero-padded by the delay -> output
shifted back by RNNoise's fixed delay of 960 samples (20 ms: one frame of overlap-add plus one
frame of buffering; measured by cross-correlation in the tests) -> soxr -> 16 kHz, the input's
length. A fresh state per utterance (creating one costs microseconds), so results never depend
on what was processed before.

:meth:`RNNoise.enhance_with_vad` also returns RNNoise's voice-activity probability per 10 ms
frame.
"""
from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ser_bench.errors import PluginError
from pydantic import Field

from ser_bench.interfaces import SAMPLE_RATE, Enhancer, PluginConfig

from .common import UPSAMPLERS, down, file_sha256, require, up

#: RNNoise's delay at 48 kHz (samples): 2 frames of 480 (the tests measure it).
DELAY_48K = 960
FRAME_48K = 480
SCALE = 32768.0


@lru_cache(maxsize=1)
def _binding() -> tuple[Any, int, str]:
    """(the ctypes library, its frame size, the library file) from pyrnnoise."""
    mod = require("pyrnnoise.rnnoise", enhancer="rnnoise", dist="pyrnnoise")
    lib = mod.lib
    frame = int(lib.rnnoise_get_frame_size())
    if frame != FRAME_48K or int(getattr(mod, "SAMPLE_RATE", 48000)) != 48000:
        raise PluginError(f"pyrnnoise reports {frame}-sample frames at {getattr(mod, 'SAMPLE_RATE', '?')} Hz; "
                          f"this wrapper expects {FRAME_48K} at 48000 Hz (an incompatible pyrnnoise version)")
    return lib, frame, str(getattr(mod, "LIBRNNOISE", ""))


class RNNoise(Enhancer):
    """RNNoise at 48 kHz, wrapped to the harness's 16 kHz contract (aligned, same length)."""

    name: ClassVar[str] = "rnnoise"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = (
        "RNNoise (pretrained GRU + pitch filter, 48 kHz, weights compiled into pyrnnoise); extra: enhancers"
    )

    class Config(PluginConfig):
        upsampler: Literal[UPSAMPLERS] = Field(  # type: ignore[valid-type]
            "soxr", description="16 -> 48 kHz path: soxr (chosen on held-out speech: RNNoise scores the "
            "same through all four), floor (soxr + a noise floor at -15 dB in 8.2-24 kHz), reference "
            "(Hann-windowed sinc, torchaudio sinc_fast) or poly")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        _binding()  # fail now (one line naming the extra) if pyrnnoise is missing

    def identity(self) -> dict[str, Any]:
        """Name, version, options and the SHA-256 of librnnoise (its weights are compiled in)."""
        ident = super().identity()
        if self.config.upsampler == "soxr":  # the option came later with this default: keep the earlier keys
            ident["config"].pop("upsampler", None)
        lib_file = _binding()[2]
        ident["library_sha256"] = file_sha256(Path(lib_file)) if lib_file and Path(lib_file).is_file() else "?"
        return ident

    def _run(self, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lib, frame, _ = _binding()
        n = len(noisy)
        x48 = up(noisy, SAMPLE_RATE, self.config.upsampler)
        n48 = len(x48)
        frames = -(-(n48 + DELAY_48K) // frame)
        xin = np.zeros(frames * frame, np.float32)
        xin[:n48] = x48 * SCALE
        yout = np.zeros_like(xin)
        ptr = ctypes.POINTER(ctypes.c_float)
        a_in, a_out, step = xin.ctypes.data, yout.ctypes.data, frame * xin.itemsize
        process = lib.rnnoise_process_frame
        st = lib.rnnoise_create(None)
        if not st:
            raise PluginError("rnnoise_create failed (out of memory?)")
        try:
            vad = np.fromiter((process(st, ctypes.cast(a_out + i * step, ptr), ctypes.cast(a_in + i * step, ptr))
                               for i in range(frames)), dtype=np.float32, count=frames)
        finally:
            lib.rnnoise_destroy(st)
        y = down(yout[DELAY_48K : DELAY_48K + n48] / SCALE, SAMPLE_RATE, n)
        n_vad = -(-n // (SAMPLE_RATE // 100))
        # the VAD of call j belongs to the frame whose output comes out of call j + 1
        vad = vad[DELAY_48K // frame - 1 :][:n_vad]
        return y, np.pad(vad, (0, n_vad - len(vad)), mode="edge") if len(vad) else np.zeros(n_vad, np.float32)

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        return self._run(noisy)[0]

    def enhance_with_vad(self, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(enhanced, vad)``: :meth:`enhance`'s output and RNNoise's speech probability (0..1)
        for each 10 ms frame starting at sample ``160 * i`` (``ceil(len(noisy) / 160)`` values)."""
        x = np.asarray(noisy, dtype=np.float32)
        if x.ndim != 1:
            raise PluginError(f"enhancer {self.name!r} needs mono 1-D input, got shape {x.shape}")
        return self._run(x)
