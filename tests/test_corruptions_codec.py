"""The `codec` corruption (MP3 / Opus through imageio-ffmpeg's binary): `pip install 'ser-bench[codec]'`."""
from __future__ import annotations

import numpy as np
import pytest

from ser_bench.corruptions import StepContext
from ser_bench.mixing import power
from ser_bench.testing import check_corruption, speech_like
from ser_bench_plugins.corruptions import Codec

try:
    import imageio_ffmpeg  # noqa: F401

    HAVE_FFMPEG = True
except ImportError:
    HAVE_FFMPEG = False

pytestmark = pytest.mark.skipif(not HAVE_FFMPEG, reason="the codec corruption needs pip install 'ser-bench[codec]'")


def _lag(y, x, max_lag=800):
    from scipy.signal import correlate

    c = correlate(np.asarray(y, float), np.asarray(x, float), mode="full", method="fft")
    mid = len(x) - 1
    return int(np.argmax(c[mid - max_lag: mid + max_lag + 1]) - max_lag)


@pytest.mark.parametrize("codec,bitrate", [("mp3", 16), ("opus", 8)])
def test_codec_at_a_low_bitrate_is_lossy_aligned_and_level_matched(codec, bitrate):
    x = (0.3 * speech_like(1.5, seed=2)).astype(np.float32)
    c = Codec()
    y, info = c.apply(x, c.Params(codec=codec, bitrate=bitrate), np.random.default_rng(0),
                      StepContext(key="k", seed=0, speech_name="x"))
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert _lag(y, x) == 0  # the codec's delay was removed
    assert info["codec"] == codec and info["bitrate"] == bitrate
    assert power(y) == pytest.approx(power(x), rel=1e-3)
    err = power(y - x) / power(x)
    assert 1e-4 < err < 1.0  # lossy, but still the same speech


def test_codec_conforms():
    check_corruption(Codec, params="codec(codec=mp3,bitrate=16)")
