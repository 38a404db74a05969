"""Bad input, one case at a time: a clear error naming the file/value and the fix, or documented
handling recorded per utterance in the registry; never a lost stored result.

Covered: corrupt header, empty file, truncated file, zero-length audio, stereo (downmix), other
sample rates (soxr resampling, no aliasing), NaN/inf samples, silent speech, silent noise,
clipping after mixing at -5 dB, a missing file listed in a manifest, unknown plugin names,
invalid config values; the bad-utterance policy (fail / skip) on the runner and the CLI.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from ser_bench import Dataset, NoiseClip, NoiseSource, PluginConfig, hookimpl
from ser_bench.audio import load_audio
from ser_bench.cli import cli
from ser_bench.config import RunConfig, make_config
from ser_bench.db import Store
from ser_bench.errors import AudioError, BenchError, ConfigError, PluginError, UnknownPluginError
from ser_bench.interfaces import Utterance
from ser_bench.audio import is_silent
from ser_bench.mixing import MIXING_VERSION, PEAK_LIMIT, mix, snr_db
from ser_bench.audit import audit
from ser_bench.runner import Context, run
from ser_bench.testing import speech_like

SR = 16_000
EXTRA = ["ser_bench.testing:testing_plugin", "test_bad_input:BadInputPlugins"]


def _tone(freq: float, sr: int = SR, seconds: float = 0.5, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_hz(x: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[int(np.argmax(spec))])


# ----------------------------------------------------------------------------- files, one at a time


def test_corrupt_header_names_the_file(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x00\x01\x02\x03WAVEjunk" + bytes(range(200)))
    with pytest.raises(AudioError, match=r"corrupt\.wav: cannot decode audio: not a readable audio file: it starts "
                                         r"like WAV \(RIFF\) but its header or data is damaged; export it again"):
        load_audio(p)


#: Random bytes that start like an MPEG frame: libsndfile hands them to libmpg123, which prints
#: "Note: Illegal Audio-MPEG-Header ..." to file descriptor 2, and then says "File does not exist
#: or is not a regular file (possibly a pipe?)" of a file that exists.
MPEG_LIKE = b"\xff\xfb\x90\x64" + np.random.default_rng(0).bytes(6000)


@pytest.mark.parametrize("content, why", [
    (MPEG_LIKE, "it starts like an MPEG audio frame but no valid MP3 stream follows"),
    (np.random.default_rng(1).bytes(4000), "it starts like an MPEG audio frame but no valid MP3 stream follows"),
    (b"nope, just text", "no known audio header (the file starts with bytes 6e 6f 70 65 2c 20 6a 75)"),
    (b"RIFF\x10\x00\x00\x00AVI LIST", "a RIFF file of type 'AVI ', not WAVE audio"),
], ids=["mpeg-sync-then-random", "random-bytes", "text", "avi"])
def test_unreadable_file_is_described_in_our_words_and_decoder_noise_stays_off_the_terminal(tmp_path, capfd, content,
                                                                                            why):
    from ser_bench_plugins.corpus_utils import probe_audio

    p = tmp_path / "random.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError) as err:
        load_audio(p)
    assert str(err.value) == (f"{p}: cannot decode audio: not a readable audio file: {why}; export it again as "
                              "WAV/FLAC, or remove it")
    assert probe_audio(p) == (f"cannot decode audio: not a readable audio file: {why}; export it again as WAV/FLAC, "
                              "or remove it")
    out, errout = capfd.readouterr()
    assert errout == "" and out == ""  # no "Illegal Audio-MPEG-Header" / "[src/libmpg123/..." lines
    os.write(2, b"still here\n")  # and stderr works again afterwards (the redirection is undone)
    assert capfd.readouterr().err == "still here\n"


def test_cli_run_over_an_unreadable_file_prints_our_words_only(tmp_path):
    root = tmp_path / "corpus"
    for s in range(2):
        for ci, label in enumerate(("low", "high")):
            (root / label / f"s{s}").mkdir(parents=True)
            for k in range(2):
                sf.write(root / label / f"s{s}" / f"u{k}.wav", speech_like(0.3, f0=120.0 * (1 + ci), seed=s + k), SR)
    (root / "low" / "s0" / "u1.wav").write_bytes(MPEG_LIKE)
    r = subprocess.run([sys.executable, "-m", "ser_bench.cli", "run", "clean", "--dataset", "folder-dataset",
                        "--data-root", f"folder-dataset={root}", "--db", str(tmp_path / "r.db"), "-q", "-j", "1",
                        "--cache", str(tmp_path / "c")], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[:2] == [
        "Error: 1 bad utterance; the run stopped before computing anything (stored results are untouched):",
        f"  - folder-dataset/low/s0/u1: {root / 'low/s0/u1.wav'}: cannot decode audio: not a readable audio file: it "
        "starts like an MPEG audio frame but no valid MP3 stream follows; export it again as WAV/FLAC, or remove it"]
    for noise in ("mpg123", "MPEG-Header", "possibly a pipe", "does not exist", "Traceback"):
        assert noise not in r.stderr + r.stdout


def test_empty_file_names_the_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: the file is empty \(0 bytes\); copy or export it again"):
        load_audio(p)
    utt = Utterance(id="e", speaker="s", label="a", path=p)
    problem, _ = audit(Context(RunConfig(protocol="clean"), None, str(tmp_path / "c")), utt)
    assert problem == f"{p}: the file is empty (0 bytes); copy or export it again"


def test_truncated_file_is_detected_although_decoders_read_what_is_there(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, speech_like(1.0, seed=1), SR, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 8000])
    assert len(load_audio(cut)) == 4000  # libsndfile silently returns the part that is there...
    ctx = Context(RunConfig(protocol="clean"), None, str(tmp_path / "c"))
    problem, _ = audit(ctx, Utterance(id="t", speaker="s", label="a", path=cut))
    assert problem == (f"{cut}: truncated: the header declares 32000 bytes of audio, the file holds 8000; "
                       "copy or export the file again")  # ... so the audit reads the header itself
    assert audit(ctx, Utterance(id="f", speaker="s", label="a", path=full)) == ("", "")


def test_zero_length_audio(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudioError, match=r"zero\.wav: the file holds no samples \(empty or truncated\); re-export it"):
        load_audio(p)
    from ser_bench.audio import check_signal

    with pytest.raises(AudioError, match="gen-3: zero-length audio; remove the file or re-export it"):
        check_signal(np.zeros(0), source="gen-3")


def test_stereo_is_downmixed_by_averaging_and_recorded(tmp_path):
    left, right = _tone(440.0), _tone(440.0, amp=0.1)
    p = tmp_path / "stereo.wav"
    sf.write(p, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    x = load_audio(p)
    assert x.ndim == 1 and np.allclose(x, (left + right) / 2, atol=1e-6)
    ctx = Context(RunConfig(protocol="clean"), None, str(tmp_path / "c"))
    assert audit(ctx, Utterance(id="st", speaker="s", label="a", path=p)) == ("", "2 channels downmixed to mono (mean)")


@pytest.mark.parametrize("sr_in", [8000, 22050, 44100, 48000])
def test_other_sample_rates_are_resampled_properly(tmp_path, sr_in):
    p = tmp_path / f"r{sr_in}.wav"
    sf.write(p, _tone(1000.0, sr=sr_in, seconds=1.0), sr_in, subtype="FLOAT")
    x = load_audio(p)
    assert abs(len(x) - SR) <= 1  # one second stays one second
    assert abs(_dominant_hz(x) - 1000.0) < 2.0
    mid = x[1000:-1000]
    assert abs(np.sqrt(np.mean(mid**2)) - 0.3 / np.sqrt(2)) < 0.003  # level kept
    if sr_in > SR:  # a 10 kHz tone is above the new Nyquist: removed, not aliased to 6 kHz
        q = tmp_path / f"hi{sr_in}.wav"
        sf.write(q, _tone(10_000.0, sr=sr_in, seconds=1.0), sr_in, subtype="FLOAT")
        y = load_audio(q)[1000:-1000]
        assert 20 * np.log10(np.sqrt(np.mean(y**2)) / (0.3 / np.sqrt(2)) + 1e-12) < -60
    ctx = Context(RunConfig(protocol="clean"), None, str(tmp_path / "c"))
    _, conv = audit(ctx, Utterance(id="r", speaker="s", label="a", path=p))
    assert conv == f"resampled {sr_in} Hz -> 16000 Hz (soxr, very high quality)"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_samples_name_the_file_and_count(tmp_path, bad):
    x = _tone(300.0)
    x[[10, 20, 30]] = bad
    p = tmp_path / "nan.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: 3 NaN/inf samples; re-export the file with finite samples"):
        load_audio(p)


def test_silent_speech_cannot_be_mixed_and_is_flagged_by_the_audit(tmp_path):
    clip = NoiseClip(id="n0", loader=lambda: _tone(100.0, amp=0.2))
    with pytest.raises(AudioError, match=r"quiet\.wav: the speech is silent, so no SNR can be set; remove the utterance"):
        mix(np.zeros(8000, np.float32), [clip], 0.0, key="k", seed=0, source="t", speech_name="quiet.wav")
    p = tmp_path / "quiet.wav"
    sf.write(p, np.zeros(8000, np.float32), SR)
    problem, _ = audit(Context(RunConfig(protocol="clean"), None, str(tmp_path / "c")), 
        Utterance(id="q", speaker="s", label="a", path=p))
    assert problem.startswith(f"{p}: the speech is silent (peak below 1e-05)") and "remove or replace" in problem


def test_silent_noise_clip_is_named(tmp_path):
    clip = NoiseClip(id="hushed", loader=lambda: np.zeros(16000, np.float32), path=tmp_path / "hushed.wav")
    with pytest.raises(AudioError, match=r"noise clip .*hushed\.wav \(source 'fold'\): the segment is silent.*"
                                         r"remove the clip from the noise source"):
        mix(_tone(200.0), [clip], 5.0, key="k", seed=0, source="fold")


def test_clipping_after_mixing_at_minus_5_db_is_rescaled_keeping_the_snr():
    speech = _tone(220.0, amp=0.98)  # nearly full scale
    clip = NoiseClip(id="w", loader=lambda: np.random.default_rng(0).uniform(-1, 1, 16000).astype(np.float32))
    m = mix(speech, [clip], -5.0, key="loud", seed=0, source="t")
    assert np.max(np.abs(speech + m.noise / m.gain)) > 1.0  # it would have clipped
    assert m.gain < 1.0 and np.max(np.abs(m.noisy)) <= PEAK_LIMIT + 1e-6
    assert abs(snr_db(m.clean, m.noise) - (-5.0)) < 0.01
    assert np.allclose(m.noisy, m.clean + m.noise, atol=1e-6)


# ----------------------------------------------------------------------------- a corpus with bad files

BAD = {  # utterance -> how its file is broken
    "s0_low_0": "corrupt", "s0_low_1": "empty", "s1_high_0": "truncated", "s1_high_1": "zero",
    "s2_low_0": "nan", "s2_low_1": "silent",
}


def _write(path: Path, how: str, x: np.ndarray) -> None:
    if how == "good":
        sf.write(path, x, SR, subtype="PCM_16")
    elif how == "stereo44k":
        import soxr

        y = soxr.resample(x, SR, 44100)
        sf.write(path, np.stack([y, y], axis=1), 44100, subtype="PCM_16")
    elif how == "corrupt":
        path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" + bytes(100))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        sf.write(path, x, SR, subtype="PCM_16")
        path.write_bytes(path.read_bytes()[: 44 + len(x)])  # half the samples
    elif how == "zero":
        sf.write(path, np.zeros(0, np.float32), SR)
    elif how == "nan":
        y = x.copy()
        y[100] = np.nan
        sf.write(path, y, SR, subtype="FLOAT")
    elif how == "silent":
        sf.write(path, np.zeros_like(x), SR)


@pytest.fixture(params=["manifest", "folder-dataset"])
def corpus(tmp_path, request) -> "_Corpus":
    """3 speakers x 2 classes x 3 utterances, six files broken, one stereo 44.1 kHz, as a
    ``manifest`` (ROOT/<id>.wav listed in ROOT/list.csv) or a ``folder-dataset``
    (ROOT/<label>/<speaker>/<id>.wav); ``corpus.kind`` says which."""
    root = tmp_path / "corpus"
    root.mkdir()
    rows = []
    for s in range(3):
        for ci, label in enumerate(("low", "high")):
            for k in range(3):
                uid = f"s{s}_{label}_{k}"
                x = speech_like(0.5, f0=110.0 * 1.7**ci * (0.94 + 0.04 * s), seed=100 * s + 10 * ci + k)
                how = BAD.get(uid, "stereo44k" if uid == "s2_high_2" else "good")
                rel = f"{uid}.wav" if request.param == "manifest" else f"{label}/s{s}/{uid}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                _write(root / rel, how, x)
                rows.append({"path": rel, "label": label, "speaker": f"s{s}"})
    if request.param == "manifest":
        with open(root / "list.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["path", "label", "speaker"])
            w.writeheader()
            w.writerows(rows)
    return _Corpus(root, request.param)


@dataclass(frozen=True)
class _Corpus:
    """A corpus folder and its layout (``kind``: the dataset plugin that reads it)."""

    root: Path
    kind: str

    def options(self, **kw) -> dict:
        """The dataset's options (every check on, as a user runs it)."""
        opts = {"manifest": str(self.root / "list.csv")} if self.kind == "manifest" else {"root": str(self.root)}
        return {self.kind: {**opts, **kw}}

    def file(self, uid: str) -> Path:
        s, label, _ = uid.split("_")
        return self.root / (f"{uid}.wav" if self.kind == "manifest" else f"{label}/{s}/{uid}.wav")

    def uid(self, uid: str) -> str:
        """The utterance id the dataset gives the file of ``uid``."""
        s, label, _ = uid.split("_")
        return uid if self.kind == "manifest" else f"{label}/{s}/{uid}"


def _cfg(corpus: _Corpus, **kw) -> RunConfig:
    base = dict(protocol="clean", datasets=[corpus.kind], ser_models=["centroid"], enhancers=["none"],
                noise_sources=["fake-noise"], snrs=[0.0], options=corpus.options())
    base.update(kw)
    return RunConfig(**base)


def _stored_run(tmp_path) -> Store:
    """A database already holding the results of another run (must survive every failure)."""
    store = Store(str(tmp_path / "keep.db"))
    cfg = RunConfig(protocol="clean", datasets=["tones"], ser_models=["centroid"], enhancers=["none"],
                    noise_sources=["fake-noise"], snrs=[0.0])
    run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    assert store.count("results") == 6
    return store


def _same_results(store: Store, before) -> None:  # noqa: ANN001
    assert store.results_frame().equals(before)


REASON = {"corrupt": "cannot decode audio: not a readable audio file: it starts like WAV (RIFF)",
          "empty": "the file is empty (0 bytes); copy or export it again",
          "truncated": "truncated: the header declares", "zero": "the file holds no samples",
          "nan": "1 NaN/inf samples", "silent": "the speech is silent"}


def test_policy_fail_lists_every_bad_file_and_the_fix_and_keeps_stored_results(tmp_path, corpus):
    """With the datasets' own checks on: one error names all six bad files (those the loader's
    header probe finds and those only the audit finds), each with its reason, and one fix."""
    store = _stored_run(tmp_path)
    before = store.results_frame()
    with pytest.raises(AudioError) as err:
        run(_cfg(corpus), store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    msg = str(err.value)
    assert msg.startswith("6 bad utterances; the run stopped before computing anything (stored results are untouched)")
    listed = [ln for ln in msg.splitlines() if ln.startswith("  - ")]
    assert len(listed) == 6
    for uid, how in BAD.items():
        line = next(ln for ln in listed if ln.startswith(f"  - {corpus.kind}/{corpus.uid(uid)}: "))
        assert str(corpus.file(uid)) in line and REASON[how] in line
    advice = [ln for ln in msg.splitlines() if not ln.startswith("  - ")][1:]
    assert advice == ["Fix or remove these files, or run with --on-bad-audio skip (suite: on_bad_audio = \"skip\") to "
                      "leave them out of every fold; skipped utterances are recorded in the registry "
                      "(`bench runs show RUN`)."]  # one line of advice, not the loader's own as well
    _same_results(store, before)
    assert store.count("runs") == 1  # no run row for the failed start


def test_policy_skip_leaves_bad_utterances_out_and_records_them(tmp_path, corpus):
    store = _stored_run(tmp_path)
    before = store.results_frame()
    cfg = _cfg(corpus, on_bad_audio="skip")
    s = run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    assert (s.n_cells, s.n_done, s.n_failed) == (3, 3, 0)
    cells = store.cells_frame([s.run_id])
    assert cells.n_test.sum() == 18 - 6  # every good utterance is tested once, no bad one
    notes = store.utterance_notes_frame([s.run_id])
    skipped = notes[notes.kind == "skipped"]
    assert sorted(skipped.utterance_id) == sorted(corpus.uid(u) for u in BAD)
    for uid, how in BAD.items():
        note = skipped[skipped.utterance_id == corpus.uid(uid)].iloc[0]
        assert note.path == str(corpus.file(uid)) and REASON[how] in note.detail
    conv = notes[notes.kind == "converted"]
    assert conv.utterance_id.tolist() == [corpus.uid("s2_high_2")]
    assert conv.detail.iloc[0] == "2 channels downmixed to mono (mean); resampled 44100 Hz -> 16000 Hz (soxr, very high quality)"
    # the earlier run's results are still there, unchanged
    old = store.results_frame()
    assert old[old.run_id != s.run_id].reset_index(drop=True).equals(before.reset_index(drop=True))
    # resuming adds nothing, duplicates nothing
    s2 = run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    assert s2.run_id == s.run_id and s2.n_done == 0 and s2.n_skipped == 3
    assert len(store.utterance_notes_frame()) == len(notes)
    # the policy changes the folds, so its cells are not those of a run over all files
    assert cfg.config_hash() != _cfg(corpus).config_hash()
    assert _cfg(corpus).config_hash() == RunConfig(**{**_cfg(corpus).model_dump(), "on_bad_audio": "fail"}).config_hash()


def test_entries_a_loader_skips_by_its_own_option_are_recorded(tmp_path, corpus):
    """``on_bad_entry=skip`` on the dataset (run policy: fail): the loader's finds are skipped and,
    like the audit's under ``on_bad_audio = "skip"``, recorded with their reason."""
    for uid in ("s1_high_0", "s1_high_1", "s2_low_0", "s2_low_1"):  # leave only what the loader's probe finds
        _write(corpus.file(uid), "good", speech_like(0.5, f0=150.0, seed=7))
    store = Store(str(tmp_path / "a.db"))
    s = run(_cfg(corpus, options=corpus.options(on_bad_entry="skip")), store=store, executor="inline",
            extra_plugins=EXTRA, progress=False)
    assert s.n_done == 3 and store.cells_frame([s.run_id]).n_test.sum() == 18 - 2
    skipped = store.utterance_notes_frame([s.run_id]).query("kind == 'skipped'")
    assert skipped.utterance_id.tolist() == [corpus.uid("s0_low_0"), corpus.uid("s0_low_1")]
    assert REASON["corrupt"] in skipped.detail.iloc[0] and REASON["empty"] in skipped.detail.iloc[1]
    assert skipped.path.tolist() == [str(corpus.file("s0_low_0")), str(corpus.file("s0_low_1"))]


def test_fixing_a_file_brings_it_back(tmp_path, corpus):
    store = Store(str(tmp_path / "a.db"))
    cfg = _cfg(corpus, on_bad_audio="skip")
    run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    for uid in BAD:  # the user re-exports the broken files
        _write(corpus.file(uid), "good", speech_like(0.5, f0=150.0, seed=7))
    s = run(_cfg(corpus), store=store, executor="inline", extra_plugins=EXTRA, progress=False)  # policy fail: ok now
    assert s.n_done == 3 and store.cells_frame([s.run_id]).n_test.sum() == 18


def test_a_missing_file_listed_in_a_manifest(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    corpus = _Corpus(root, "manifest")
    rows = []
    for s in range(2):
        for label in ("low", "high"):
            for k in range(2):
                uid = f"s{s}_{label}_{k}"
                if uid != "s1_low_1":
                    sf.write(root / f"{uid}.wav", speech_like(0.3, f0=130.0 if label == "low" else 260.0, seed=k), SR)
                rows.append(f"{uid}.wav,{label},s{s}")
    (root / "list.csv").write_text("path,label,speaker\n" + "\n".join(rows) + "\n")
    store = Store(str(tmp_path / "a.db"))
    # the manifest loader checks paths while listing; the run's policy decides: fail names the line and file...
    with pytest.raises(AudioError) as err:
        run(_cfg(corpus), store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    msg = str(err.value)
    assert f"  - manifest/s1_low_1: list.csv line 7: audio file {root / 's1_low_1.wav'} not found" in msg
    assert "--on-bad-audio skip" in msg and "on_bad_entry" not in msg
    assert store.count("runs") == 0
    # ... skip leaves it out and records it
    s = run(_cfg(corpus, on_bad_audio="skip"), store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    assert s.n_done == 2 and store.cells_frame().n_test.sum() == 7
    notes = store.utterance_notes_frame()
    assert notes[["utterance_id", "kind", "path"]].values.tolist() == [["s1_low_1", "skipped", str(root / "s1_low_1.wav")]]


def test_a_file_that_disappears_after_listing_is_a_bad_utterance(tmp_path):
    store = Store(str(tmp_path / "a.db"))
    cfg = RunConfig(protocol="clean", datasets=["vanishing"], ser_models=["centroid"], enhancers=["none"],
                    noise_sources=["fake-noise"], snrs=[0.0], options={"vanishing": {"root": str(tmp_path)}})
    with pytest.raises(AudioError, match=r"vanishing/s0_1: .*gone\.wav: file not found; check the dataset root or "
                                         r"the manifest entry"):
        run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    s = run(cfg.model_copy(update={"on_bad_audio": "skip"}), store=store, executor="inline", extra_plugins=EXTRA,
            progress=False)
    assert s.n_done == 2
    assert store.utterance_notes_frame().utterance_id.tolist() == ["s0_1"]


@pytest.mark.slow
def test_a_file_that_kills_the_decoder_is_a_bad_utterance(tmp_path):
    """On a process pool: the audit chunk's worker dies; its files are retried one by one, and the
    culprit (only it) becomes a bad utterance, named."""
    store = Store(str(tmp_path / "a.db"))
    cfg = RunConfig(protocol="clean", datasets=["crashy"], ser_models=["centroid"], enhancers=["none"],
                    noise_sources=["fake-noise"], snrs=[0.0], on_bad_audio="skip")
    s = run(cfg, store=store, executor="process", jobs=2, extra_plugins=EXTRA, progress=False)
    assert (s.n_done, s.n_failed) == (2, 0)
    notes = store.utterance_notes_frame()
    assert notes.utterance_id.tolist() == ["s1_high_1"]
    assert notes.detail.iloc[0].startswith("s1_high_1: reading it killed the worker process (the worker process died")


def test_silent_noise_fails_the_cells_that_need_it_not_the_run(tmp_path):
    store = Store(str(tmp_path / "a.db"))
    cfg = RunConfig(protocol="mismatched", datasets=["tones"], ser_models=["centroid"], enhancers=["none"],
                    noise_sources=["hushed-noise"], snrs=[0.0], options={"tones": {"per_class": 2}})
    s = run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    assert (s.n_cells, s.n_done, s.n_failed) == (6, 3, 3)  # clean cells done, noisy ones failed
    cells = store.cells_frame()
    failed = cells[cells.status == "failed"]
    assert set(failed.test_condition) == {"noisy"}
    assert failed.error.str.contains(r"noise clip hushed-0 \(source 'hushed-noise'\): the segment is silent").all()
    assert failed.error.str.contains("remove the clip from the noise source").all()
    assert store.runs_frame().status.tolist() == ["failed"]


# ----------------------------------------------------------------------------- names and config values


def test_unknown_plugin_names_are_clear_and_lose_nothing(tmp_path):
    store = _stored_run(tmp_path)
    before = store.results_frame()
    for field, wrong, right in (("enhancers", ["none", "wienr"], "wiener"), ("ser_models", ["centroyd"], "centroid"),
                                ("datasets", ["tone"], "tones"), ("noise_sources", ["fake-nois"], "fake-noise")):
        cfg = RunConfig(protocol="clean", datasets=["tones"], ser_models=["centroid"], enhancers=["none"],
                        noise_sources=["fake-noise"], snrs=[0.0]).model_copy(update={field: wrong})
        with pytest.raises(UnknownPluginError, match=rf"Did you mean '{right}'"):
            run(cfg, store=store, executor="inline", extra_plugins=EXTRA, progress=False)
    with pytest.raises(PluginError, match="extra plugin 'nocolon' must look like 'module:attribute'"):
        run(RunConfig(protocol="clean"), store=store, executor="inline", extra_plugins=["nocolon"], progress=False)
    _same_results(store, before)


@pytest.mark.parametrize("data, needle", [
    ({"snrs": [100.0]}, "snrs: Value error, SNR 100.0 dB is outside [-30, 60]"),
    ({"snrs": [0.0, 0.0]}, "duplicate SNRs in [0.0, 0.0]"),
    ({"on_bad_audio": "ignore"}, "on_bad_audio: Input should be 'fail' or 'skip'"),
    ({"cv": "kfold"}, "cv: Input should be 'auto', 'loso', 'partition', 'group-kfold', 'dataset' or 'emobox'"),
    ({"snr": [0.0]}, "snr: Extra inputs are not permitted"),
    ({"datasets": []}, "datasets: List should have at least 1 item"),
    ({"seed": "zero"}, "seed: Input should be a valid integer"),
])
def test_invalid_config_values_name_the_field_and_value(data, needle):
    with pytest.raises(ConfigError) as err:
        make_config({"protocol": "clean", **data}, source="suite.toml")
    assert str(err.value).startswith("invalid configuration in suite.toml: ")
    assert needle in str(err.value)


def test_cli_rejects_bad_values_before_touching_the_database(tmp_path):
    db = tmp_path / "cli.db"
    r = CliRunner().invoke(cli, ["run", "clean", "--db", str(db), "-j", "0"])
    assert r.exit_code == 2 and "Invalid value for '-j' / '--jobs': 0 is not in the range x>=1" in r.output
    r = CliRunner().invoke(cli, ["run", "clean", "--db", str(db), "--on-bad-audio", "ignore"])
    assert r.exit_code == 2 and "'ignore' is not one of 'fail', 'skip'" in r.output
    r = CliRunner().invoke(cli, ["run", "clean", "--db", str(db), "--snr", "99"])
    assert r.exit_code == 1 and "SNR 99.0 dB is outside [-30, 60]" in r.output
    r = CliRunner().invoke(cli, ["run", "clean", "--db", str(db), "--enhancer", "wienr"])
    assert r.exit_code == 1 and "unknown enhancer 'wienr'. Did you mean 'wiener'?" in r.output
    r = CliRunner().invoke(cli, ["run", "clean", "--db", str(db), "--executor", "process", "--scheduler", "tcp://x:1"])
    assert r.exit_code == 1 and "needs --executor dask" in r.output
    r = CliRunner().invoke(cli, ["run", "clean", "--db", str(db), "-o", "synthetic.per_class=0"])
    assert r.exit_code == 1 and "per_class: Input should be greater than or equal to 1" in r.output
    suite = tmp_path / "bad.toml"
    suite.write_text('protocol = "clean"\non_bad_audio = "sometimes"\n')
    r = CliRunner().invoke(cli, ["run", "--suite", str(suite), "--db", str(db)])
    assert r.exit_code == 1 and f"invalid configuration in {suite}: on_bad_audio" in r.output
    assert not db.exists() or Store(str(db)).count("results") == 0


def test_cli_skip_policy_and_runs_show(tmp_path, corpus):
    db = str(tmp_path / "cli.db")
    where = ["-o", f"manifest.manifest={corpus.root / 'list.csv'}"] if corpus.kind == "manifest" else \
        ["--data-root", f"folder-dataset={corpus.root}"]
    args = ["run", "clean", "--dataset", corpus.kind, "--ser-model", "svm-egemaps", "--enhancer", "none", "-q",
            "-j", "1", "--db", db, *where]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and "6 bad utterances" in r.output and "--on-bad-audio skip" in r.output
    assert "on_bad_entry" not in r.output
    r = CliRunner().invoke(cli, args + ["--on-bad-audio", "skip"])
    assert r.exit_code == 0, r.output
    assert "skipping 6 bad utterance(s)" in r.output and "3 computed" in r.output
    r = CliRunner().invoke(cli, ["runs", "show", "1", "--db", db])
    assert r.exit_code == 0
    skipped = [ln for ln in r.output.splitlines() if ln.startswith(f"SKIPPED {corpus.kind}/")]
    assert len(skipped) == 6 and any("s1_high_0: " in ln and "truncated" in ln for ln in skipped)
    assert any("s0_low_0: " in ln and "not a readable audio file" in ln for ln in skipped)
    assert "1 utterance(s) converted on loading" in r.output


# ----------------------------------------------------------------------------- plugins used above


class VanishingDataset(Dataset):
    """Two speakers, two classes; the file of s0_1 is listed but does not exist."""

    name = "vanishing"

    class Config(PluginConfig):
        root: str

    def load_utterances(self):
        root = Path(self.config.root) / "vanishing"
        root.mkdir(exist_ok=True)
        out = []
        for s in range(2):
            for k, label in enumerate(("low", "high")):
                p = root / (f"s{s}_{k}.wav" if (s, k) != (0, 1) else "gone.wav")
                if p.name != "gone.wav" and not p.exists():
                    sf.write(p, speech_like(0.3, f0=120.0 * (1 + k), seed=s * 2 + k), SR)
                out.append(Utterance(id=f"s{s}_{k}", speaker=f"s{s}", label=label, path=p))
        return out


class CrashyDataset(Dataset):
    """Two speakers x two classes x two utterances; decoding s1_high_1 kills the process (in pool
    workers: BENCH_WORKER is set), like a file that crashes a native decoder."""

    name = "crashy"

    def load_utterances(self):
        out = []
        for s in range(2):
            for ci, label in enumerate(("low", "high")):
                for k in range(2):
                    uid = f"s{s}_{label}_{k}"
                    out.append(Utterance(id=uid, speaker=f"s{s}", label=label, fingerprint=f"crashy:{uid}",
                                         loader=lambda uid=uid, f=150.0 * (1 + ci), seed=10 * s + k: _crashy(uid, f, seed)))
        return out


def _crashy(uid: str, f0: float, seed: int) -> np.ndarray:
    import os

    if uid == "s1_high_1" and os.environ.get("BENCH_WORKER"):
        os._exit(11)
    return speech_like(0.3, f0=f0, seed=seed)


class HushedNoise(NoiseSource):
    """A noise source whose only test clip is digital silence."""

    name = "hushed-noise"

    def load_clips(self):
        return [NoiseClip(id="hushed-0", loader=lambda: np.zeros(16000, np.float32), fingerprint="hushed-0")]

    def part_of(self, clip):
        return "test"


class BadInputPlugins:
    __name__ = "test_bad_input.plugins"

    @hookimpl
    def register_datasets(self, register):
        register("vanishing", VanishingDataset)
        register("crashy", CrashyDataset)

    @hookimpl
    def register_noise_sources(self, register):
        register("hushed-noise", HushedNoise)


def test_errors_are_bench_errors():
    """The CLI prints BenchErrors as one line without a traceback."""
    assert issubclass(AudioError, BenchError) and issubclass(UnknownPluginError, BenchError)


def test_a_silent_stretch_of_a_noise_clip_is_drawn_again_and_other_mixtures_stay_the_same():
    """A clip that is half silence: a draw landing in the silence takes another clip and offset
    from the same stream (deterministic); draws that never landed there are unchanged."""
    from ser_bench.mixing import mix_seed, noise_segment

    gappy = np.concatenate([np.zeros(16000, np.float32), _tone(150.0, seconds=1.0)])
    clips = [NoiseClip(id="gappy", loader=lambda: gappy), NoiseClip(id="steady", loader=lambda: _tone(90.0, seconds=2.0))]
    speech = _tone(200.0, seconds=0.5)
    landed, kept = 0, 0
    for k in range(40):
        m = mix(speech, clips, 0.0, key=f"k{k}", seed=0, source="t")
        assert not is_silent(m.noise) and abs(snr_db(m.clean, m.noise)) < 1e-6
        np.testing.assert_array_equal(m.noisy, mix(speech, clips, 0.0, key=f"k{k}", seed=0, source="t").noisy)
        rng = np.random.default_rng(mix_seed(MIXING_VERSION, f"k{k}", 0.0, 0, "t"))
        c = clips[int(rng.integers(0, 2))]
        seg, off = noise_segment(np.asarray(c.load(), np.float64), len(speech), rng)
        if is_silent(seg):
            landed += 1
        else:  # the first draw was fine: the very mixture of before
            kept += 1
            assert (m.clip_id, m.offset) == (c.id, off)
    assert landed > 0 and kept > 0
