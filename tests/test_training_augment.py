"""Speed and tilt augmentation of the on-the-fly training stream (tiny synthetic audio)."""
from __future__ import annotations

import numpy as np
import pytest

from ser_bench.errors import ConfigError
from ser_bench.interfaces import NoiseClip
from ser_bench.training import OnTheFlyMixer, SpeechPool, change_speed

SR = 16000


def _tone(f: float, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * SR / len(x))


@pytest.fixture
def pool_and_clips():
    pool = SpeechPool(["a", "b"], [_tone(200.0), _tone(200.0, 2.5)], ["s1", "s2"])
    clips = [NoiseClip(f"n{i}", lambda i=i: (0.1 * np.random.default_rng(i).standard_normal(3 * SR)).astype(np.float32))
             for i in range(3)]
    return pool, clips


def test_change_speed_scales_pitch_and_length():
    y = change_speed(_tone(200.0, 1.0), 1.5)
    assert abs(len(y) - SR / 1.5) <= 1
    assert _peak_hz(y) == pytest.approx(300.0, abs=3.0)
    assert _peak_hz(change_speed(_tone(200.0, 1.0), 0.8)) == pytest.approx(160.0, abs=3.0)


def test_speed_perturbation_raises_the_pitch_of_clean_and_noisy(pool_and_clips):
    pool, clips = pool_and_clips
    plain = OnTheFlyMixer(pool, clips, snrs=[60], segment_s=1.0, seed=1)
    fast = OnTheFlyMixer(pool, clips, snrs=[60], segment_s=1.0, seed=1, speed=(1.5, 1.5), p_speed=1.0)
    for i in range(3):
        a, b = plain.example(i), fast.example(i)
        assert len(b.clean) == len(a.clean) == SR  # still one segment
        assert _peak_hz(a.clean) == pytest.approx(200.0, abs=3.0)
        assert _peak_hz(b.clean) == pytest.approx(300.0, abs=3.0)
        assert _peak_hz(b.noisy) == pytest.approx(300.0, abs=3.0)
    assert fast.describe()["augment"] == {"speed": [1.5, 1.5], "p_speed": 1.0, "tilt": 0.0, "p_tilt": 0.0}
    assert "augment" not in plain.describe()


def test_tilt_pre_emphasises_the_clean_target(pool_and_clips):
    pool, clips = pool_and_clips
    plain = OnTheFlyMixer(pool, clips, snrs=[60], segment_s=1.0, seed=1)
    tilted = OnTheFlyMixer(pool, clips, snrs=[60], segment_s=1.0, seed=1, tilt=0.9, p_tilt=1.0)
    a, b = plain.example(0), tilted.example(0)
    # same crop, first-order pre-emphasis x[n] - a x[n-1] with 0 <= a < 0.9: a 200 Hz tone keeps its shape
    assert not np.allclose(a.clean, b.clean)
    coef = float(np.dot(a.clean[1:] - b.clean[1:], a.clean[:-1]) / np.dot(a.clean[:-1], a.clean[:-1]))
    assert 0.0 < coef < 0.9
    assert np.allclose(b.clean[1:], a.clean[1:] - coef * a.clean[:-1], atol=1e-5)


def test_augmentation_draws_do_not_move_the_rest_of_the_stream(pool_and_clips):
    """Same seed, augmentation that changes nothing (factor 1, coefficient 0): the very same stream,
    so adding augmentation never reshuffles which speech, noise and SNR an example gets."""
    pool, clips = pool_and_clips
    plain = OnTheFlyMixer(pool, clips, snrs=[0, 5, 10], segment_s=1.0, seed=3)
    noop = OnTheFlyMixer(pool, clips, snrs=[0, 5, 10], segment_s=1.0, seed=3, speed=(1.0, 1.0), p_speed=1.0,
                         tilt=0.0, p_tilt=1.0)
    for i in range(5):
        a, b = plain.example(i), noop.example(i)
        assert (a.snr, a.speech_id, a.clip_id) == (b.snr, b.speech_id, b.clip_id)
        assert np.array_equal(a.noisy, b.noisy)


@pytest.mark.parametrize("kwargs,needle", [
    ({"speed": (1.5, 1.2)}, "speed range"),
    ({"speed": (0.2, 1.0)}, "speed range"),
    ({"tilt": 1.0}, "tilt 1.0"),
    ({"p_speed": 1.5}, "p_speed 1.5"),
])
def test_bad_augmentation_settings_name_the_value(pool_and_clips, kwargs, needle):
    pool, clips = pool_and_clips
    with pytest.raises(ConfigError, match=needle):
        OnTheFlyMixer(pool, clips, **kwargs)
