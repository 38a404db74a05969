import numpy as np
import pytest

from ser_bench.errors import AudioError
from ser_bench.interfaces import NoiseClip
from ser_bench.mixing import mix, snr_db

from conftest import tone


def clips(n=3, length=4000):
    return [NoiseClip(id=f"n{i}", loader=lambda i=i: np.random.default_rng(i).standard_normal(length).astype(np.float32))
            for i in range(n)]


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0, 40.0])
@pytest.mark.parametrize("length", [2000, 16000])  # noise longer (crop) and shorter (loop) than speech
def test_achieved_snr_within_0_05_db(snr, length):
    speech = tone(300, seconds=0.5)
    m = mix(speech, clips(length=length), snr, key="u1", seed=0, source="white")
    assert abs(snr_db(m.clean, m.noise) - snr) < 0.05
    assert np.allclose(m.noisy, m.clean + m.noise, atol=1e-6)
    assert m.noisy.shape == speech.shape and m.noisy.dtype == np.float32


def test_deterministic_and_keyed():
    speech = tone(300, seconds=0.5)
    a = mix(speech, clips(), 5.0, key="u1", seed=0, source="white")
    b = mix(speech, clips(), 5.0, key="u1", seed=0, source="white")
    c = mix(speech, clips(), 5.0, key="u2", seed=0, source="white")
    d = mix(speech, clips(), 5.0, key="u1", seed=1, source="white")
    assert np.array_equal(a.noisy, b.noisy)
    assert not np.array_equal(a.noisy, c.noisy)
    assert not np.array_equal(a.noisy, d.noisy)


def test_rescales_to_avoid_clipping_without_changing_snr():
    speech = tone(300, seconds=0.5, amp=0.95)
    m = mix(speech, clips(), -5.0, key="u", seed=0, source="white")
    assert np.max(np.abs(m.noisy)) <= 0.99 + 1e-6
    assert m.gain < 1.0
    assert abs(snr_db(m.clean, m.noise) + 5.0) < 0.05


def test_silent_speech_and_noise_are_errors_naming_the_file():
    with pytest.raises(AudioError, match="utt.wav.*silent"):
        mix(np.zeros(8000, np.float32), clips(), 0.0, key="u", seed=0, source="w", speech_name="utt.wav")
    silent = [NoiseClip(id="quiet", loader=lambda: np.zeros(8000, np.float32), path="quiet.flac")]
    with pytest.raises(AudioError, match="quiet.flac.*silent"):
        mix(tone(300), silent, 0.0, key="u", seed=0, source="w")


def test_noise_identity_tracks_clip_content(tmp_path):
    """Adding a clip to a folder noise source changes its identity (so cached mixtures are not reused)."""
    import soundfile as sf

    from ser_bench_plugins.noise_folder import FolderNoise

    for i in range(2):
        sf.write(tmp_path / f"n{i}.wav", np.random.default_rng(i).standard_normal(8000) * 0.1, 16000)
    before = FolderNoise(root=tmp_path).identity()
    assert FolderNoise(root=tmp_path).identity() == before
    sf.write(tmp_path / "n2.wav", np.random.default_rng(2).standard_normal(8000) * 0.1, 16000)
    assert FolderNoise(root=tmp_path).identity() != before
