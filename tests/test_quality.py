"""Quality and emotion-preservation measures against reference values on known signals; the
per-file failure path; the quality stage of a run (cells, per-utterance detail, resume)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ser_bench import Enhancer, hookimpl
from ser_bench.quality import (
    LLD_COLUMNS, SI_SDR_CAP_DB, Z_CLIP, MeasureError, contour_fidelity, egemaps_lld, functional_distance,
    functional_stats, measure, pesq_wb, si_sdr, snr, stoi,
)
from ser_bench.testing import speech_like

SR = 16_000


def noise_at(x: np.ndarray, snr_db: float, seed: int = 0, orthogonal: bool = True) -> np.ndarray:
    """Zero-mean white noise at exactly ``snr_db`` below ``x`` (optionally orthogonal to ``x``)."""
    n = np.random.default_rng(seed).standard_normal(len(x))
    n -= n.mean()
    if orthogonal:
        xc = x - x.mean()
        n -= (n @ xc) / (xc @ xc) * xc
    return n * np.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def speech():
    x = speech_like(2.0, f0=180.0, seed=3).astype(np.float64)
    return x - x.mean()


# ----------------------------------------------------------------------------- SI-SDR / SNR


def test_si_sdr_of_a_scaled_copy_reaches_the_cap(speech):
    assert si_sdr(speech, 0.3 * speech) == SI_SDR_CAP_DB
    assert si_sdr(speech, -2.0 * speech) == SI_SDR_CAP_DB  # scale invariant, sign included
    assert snr(speech, speech) == SI_SDR_CAP_DB
    assert snr(speech, 0.5 * speech) == pytest.approx(20 * np.log10(2), abs=1e-9)  # SNR is not scale invariant


@pytest.mark.parametrize("db", [-5.0, 0.0, 7.5, 20.0])
def test_si_sdr_and_snr_of_added_noise_equal_that_snr(speech, db):
    y = speech + noise_at(speech, db)
    assert snr(speech, y) == pytest.approx(db, abs=1e-9)
    assert si_sdr(speech, y) == pytest.approx(db, abs=1e-6)  # noise orthogonal to the speech
    y2 = speech + noise_at(speech, db, seed=1, orthogonal=False)
    assert si_sdr(speech, y2) == pytest.approx(db, abs=0.1)  # independent noise: within 0.1 dB


def test_improvements_over_the_noisy_input(speech):
    n = noise_at(speech, 0.0)
    vals, errs = measure(speech, speech + 0.5 * n, noisy=speech + n)
    assert vals["snr_i"] == pytest.approx(20 * np.log10(2), abs=1e-9)
    # halving orthogonal noise: SI-SDR rises by 10 log10((1 + 4)/(1 + 1)) ... exactly 20 log10 2 as well
    assert vals["si_sdr_i"] == pytest.approx(20 * np.log10(2), abs=1e-6)
    assert "si_sdr_i" not in errs


def test_silent_reference_is_an_error_not_a_number():
    with pytest.raises(MeasureError):
        si_sdr(np.zeros(100), np.ones(100))
    with pytest.raises(MeasureError):
        snr(np.zeros(100), np.ones(100))


# ----------------------------------------------------------------------------- PESQ / STOI


def test_pesq_and_stoi_reference_values(speech):
    assert pesq_wb(speech, speech) > 4.5  # wide-band MOS-LQO tops out at 4.64
    assert stoi(speech, speech) == pytest.approx(1.0, abs=1e-6)
    clean_ish = speech + noise_at(speech, 20.0)
    noisy = speech + noise_at(speech, 0.0)
    p20, p0 = pesq_wb(speech, clean_ish), pesq_wb(speech, noisy)
    assert 1.0 <= p0 < p20 < 4.5
    assert p0 < 2.0
    assert stoi(speech, noisy) < stoi(speech, clean_ish) < 1.0


def test_a_failing_measure_is_recorded_and_the_others_go_on(speech):
    vals, errs = measure(speech, np.zeros_like(speech))
    assert "pesq" in errs and "silence" in errs["pesq"]
    assert "pesq" not in vals
    assert vals["si_sdr"] == -SI_SDR_CAP_DB  # defined (and terrible)
    assert "stoi" in vals
    assert "loudness_corr" in errs  # a constant loudness contour has no correlation
    assert set(vals) | set(errs) >= {"pesq", "stoi", "si_sdr", "snr", "f0_rmse", "vuv_error", "loudness_corr"}


def test_pesq_raises_from_the_c_code_on_silence_too(speech):
    vals, errs = measure(np.zeros(SR), speech[:SR])  # a silent reference: the C code finds no utterance
    assert "NoUtterancesError" in errs["pesq"] and "pesq" not in vals
    assert "silent" in errs["si_sdr"]


# ----------------------------------------------------------------------------- contours


def lld(f0, loud=None, hnr=None, alpha=None):
    n = len(f0)
    cols = {"f0": np.asarray(f0, float), "loudness": np.asarray(loud if loud is not None else np.linspace(0.1, 1, n)),
            "hnr": np.asarray(hnr if hnr is not None else np.full(n, 10.0)),
            "alpha": np.asarray(alpha if alpha is not None else np.sin(np.arange(n)))}
    return np.stack([cols[k] for k in LLD_COLUMNS], axis=1)


def test_contour_fidelity_on_known_contours():
    f0 = 30 + 3 * np.sin(np.arange(100) / 7)
    ref = lld(f0, hnr=np.full(100, 10.0))
    shifted = lld(f0 + 1.0, hnr=np.full(100, 12.0))  # one semitone up, HNR 2 dB higher
    m = {k: fn() for k, fn in contour_fidelity(ref, shifted).items()}
    assert m["f0_rmse"] == pytest.approx(1.0)
    assert m["f0_corr"] == pytest.approx(1.0)
    assert m["vuv_error"] == 0.0
    assert m["hnr_rmse"] == pytest.approx(2.0)
    assert m["loudness_corr"] == pytest.approx(1.0)
    half = f0.copy()
    half[::2] = 0.0  # every other frame unvoiced
    m2 = contour_fidelity(ref, lld(half))
    assert m2["vuv_error"]() == pytest.approx(0.5)
    assert m2["f0_rmse"]() == pytest.approx(0.0)
    few = np.zeros(100)
    few[:3] = 30.0
    with pytest.raises(MeasureError, match="voiced in both"):
        contour_fidelity(ref, lld(few))["f0_corr"]()


def test_opensmile_f0_of_a_known_pitch(speech):
    """F0 of a 180 Hz voice is 12 log2(180 / 27.5) = 32.5 semitones; an octave up is 12 more."""
    up = speech_like(2.0, f0=360.0, seed=3)
    ref, oct_ = egemaps_lld(speech), egemaps_lld(up)
    f0 = ref[:, 0][ref[:, 0] > 0]
    assert np.median(f0) == pytest.approx(12 * np.log2(180 / 27.5), abs=0.6)
    m = {k: fn() for k, fn in contour_fidelity(ref, oct_).items()}
    assert m["f0_rmse"] == pytest.approx(12.0, abs=1.0)
    same = {k: fn() for k, fn in contour_fidelity(ref, ref).items()}
    assert same["f0_rmse"] == 0.0 and same["vuv_error"] == 0.0 and same["f0_corr"] == pytest.approx(1.0)


def test_functional_distance_is_standardised_and_clipped():
    rng = np.random.default_rng(0)
    clean = rng.normal(5.0, 2.0, size=(50, 4))
    clean[:, 3] = 7.0  # constant over the clean set: skipped
    mean, std = functional_stats(clean)
    ref = clean[0]
    assert functional_distance(ref, ref, mean, std) == 0.0
    one_sd = ref + std * np.array([1, -1, 1, 0])
    assert functional_distance(ref, one_sd + np.array([0, 0, 0, 99.0]), mean, std) == pytest.approx(1.0)
    far = ref + std * np.array([1e6, 0, 0, 0])
    assert functional_distance(ref, far, mean, std) == pytest.approx(np.sqrt(Z_CLIP**2 / 3))
    with pytest.raises(MeasureError):
        functional_stats(clean[:1])


# ----------------------------------------------------------------------------- the run stage


class Gate(Enhancer):
    """Silences every other signal it is given (deterministic in-process): PESQ fails on those."""

    name = "gate"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0

    def enhance_signal(self, noisy):
        self.calls += 1
        return np.zeros_like(noisy) if self.calls % 2 else noisy * 0.5


class Half(Enhancer):
    name = "half"

    def enhance_signal(self, noisy):
        return noisy * 0.5


class Plugin:
    @hookimpl
    def register_enhancers(self, register):
        register("gate", Gate)
        register("half", Half)


@pytest.fixture
def qregistry():
    from ser_bench.plugins import build_registry, make_plugin_manager
    from ser_bench.testing import testing_plugin

    return build_registry(make_plugin_manager(entry_points=False, extra=[testing_plugin, Plugin()]))


def qconfig(**kw):
    from ser_bench.config import RunConfig

    base = dict(protocol="mismatched", datasets=["tones"], ser_models=["centroid"], enhancers=["none", "half", "gate"],
                noise_sources=["fake-noise"], snrs=[5.0], quality=True,
                options={"tones": {"n_speakers": 2, "per_class": 2, "duration_s": 1.0}})
    base.update(kw)
    return RunConfig(**base)


def test_quality_stage_stores_cells_detail_and_failures(qregistry):
    from ser_bench.db import Store
    from ser_bench.quality_runner import utterance_frame
    from ser_bench.runner import run

    store = Store()
    cfg = qconfig()
    s = run(cfg, store=store, registry=qregistry, progress=False)
    # SER: clean + noisy + 2 enhanced, x 2 LOSO folds = 8; quality: noisy + 2 enhanced = 3
    assert (s.n_cells, s.n_done, s.n_failed) == (11, 11, 0)
    cells = store.cells_frame()
    q = cells[cells.kind == "quality"]
    assert len(q) == 3 and set(q.protocol) == {"quality"} and set(q.fold) == {"all"} and set(q.ser_model) == {"-"}
    assert set(zip(q.enhancer, q.test_condition)) == {("none", "noisy"), ("half", "enhanced"), ("gate", "enhanced")}
    res = store.results_frame()
    qr = res[res.kind == "quality"].pivot_table(index="enhancer", columns="metric", values="value")
    # the reference is the clean speech as mixed: the noisy input's SNR is the SNR asked for
    assert qr.loc["none", "snr"] == pytest.approx(5.0, abs=1e-3)
    assert qr.loc["none", "si_sdr"] == pytest.approx(5.0, abs=0.5)
    assert qr.loc["half", "si_sdr"] == pytest.approx(qr.loc["none", "si_sdr"], abs=1e-3)  # scaling changes no SI-SDR
    assert qr.loc["half", "si_sdr_i"] == pytest.approx(0.0, abs=1e-3)
    assert qr.loc["none", "n_utts"] == 8
    assert "si_sdr_i" not in qr.columns or np.isnan(qr.loc["none"].get("si_sdr_i", np.nan))
    # the gate silenced half of the files: PESQ failed there, recorded per file, the cell is done
    n_bad = qr.loc["gate", "failed_pesq"]
    assert 1 <= n_bad < 8
    assert qr.loc["gate", "failures"] >= n_bad
    utt = utterance_frame(store, enhancer="gate")
    bad = utt[(utt.metric == "pesq") & utt.error.notna()]
    assert len(bad) == n_bad and bad.value.isna().all() and bad.error.str.contains("silence").all()
    assert utt[utt.metric == "si_sdr"].value.notna().all()
    detail = json.loads(q[q.enhancer == "gate"].predictions_json.iloc[0])
    assert {f["metric"] for f in detail["failures"]} >= {"pesq"}
    assert all(set(f) == {"utt", "metric", "error"} for f in detail["failures"])
    info = json.loads(q.info_json.iloc[0])
    assert "P.862.2" in info["pesq"]
    # a re-run computes nothing more
    s2 = run(cfg, store=store, registry=qregistry, progress=False)
    assert s2.n_done == 0 and s2.n_skipped == 11


def test_quality_is_off_by_default_and_keeps_config_hashes(qregistry):
    from ser_bench.db import Store
    from ser_bench.runner import run

    cfg = qconfig(quality=False)
    assert cfg.config_hash() == qconfig(quality=False).config_hash() != qconfig().config_hash()
    store = Store()
    s = run(cfg.model_copy(update={"enhancers": ["none", "half"]}), store=store, registry=qregistry, progress=False)
    assert s.n_cells == 6 and "quality" not in set(store.cells_frame().kind)


# ----------------------------------------------------------------------------- report section


def results_frame(d_pesq_by_point, d_ser_by_point):
    """A results frame: one dataset, 2 enhancers x 3 SNRs; SER gains and PESQ gains given per point."""
    import pandas as pd

    rows, cid = [], 0
    for (enh, snr), dp in d_pesq_by_point.items():
        for e, cond, pesq, f0, uar in (("none", "noisy", 1.5, 2.0, 0.40),
                                       (enh, "enhanced", 1.5 + dp, 2.0 - dp, 0.40 + d_ser_by_point[(enh, snr)])):
            cid += 1
            base = dict(cell_id=cid, run_id=1, dataset="ds", noise="nz", enhancer=e, test_snr=snr, train_snr=None,
                        ser_model="-", protocol="quality", train_condition="-", test_condition=cond, fold="all",
                        kind="quality", cell_key=f"q{cid}", n_test=5)
            rows += [dict(base, metric="pesq", value=pesq), dict(base, metric="stoi", value=0.7 + snr / 100),
                     dict(base, metric="f0_rmse", value=f0)]
            for fold in ("a", "b"):
                cid += 1
                rows.append(dict(base, cell_id=cid, kind="ser", ser_model="svm", protocol="mismatched",
                                 train_condition="clean", fold=fold, metric="uar", value=uar, cell_key=f"s{cid}"))
    return pd.DataFrame(rows)


def test_tradeoff_finds_the_measure_that_predicts_ser_benefit():
    from ser_bench.report.quality import best_predictor, correlations, quality_means, ser_means, tradeoff_points

    pts = {(e, s): g for (e, s), g in zip([(e, s) for e in ("wiener", "rescnn") for s in (0.0, 10.0, 20.0)],
                                         [0.1, 0.3, 0.2, 0.5, 0.4, 0.6])}
    d_ser = {k: 0.05 * v for k, v in pts.items()}  # SER gain exactly proportional to the PESQ gain
    res = results_frame(pts, d_ser)
    tp = tradeoff_points(quality_means(res), ser_means(res))
    assert len(tp) == 6
    row = tp[(tp.enhancer == "rescnn") & (tp.snr == 10.0)].iloc[0]
    assert row.d_ser == pytest.approx(0.02) and row.d_pesq == pytest.approx(0.4) and row.ser_noisy == pytest.approx(0.40)
    assert row.d_stoi == pytest.approx(0.0)
    corrs = correlations(tp)
    by = {(c.measure, c.variant): c for c in corrs}
    assert by[("pesq", "change")].pearson == pytest.approx(1.0) and by[("pesq", "change")].spearman == pytest.approx(1.0)
    assert by[("pesq", "change")].expected is True
    assert by[("f0_rmse", "change")].spearman == pytest.approx(-1.0) and by[("f0_rmse", "change")].expected is True
    assert by[("stoi", "change")].pearson is None  # no variation: undefined, not ranked
    best = best_predictor(corrs)
    assert best.measure in ("pesq", "f0_rmse") and abs(best.spearman) == pytest.approx(1.0)


def test_quality_section_renders_tables_curves_and_the_closing_note():
    from ser_bench.report.quality import quality_means, quality_tables, render, ser_means, tradeoff, tradeoff_points

    pts = {("wiener", s): g for s, g in zip((0.0, 5.0, 10.0, 20.0), (0.4, 0.3, 0.2, 0.1))}
    res = results_frame(pts, {k: 0.1 - 0.1 * v for k, v in pts.items()})  # here PESQ gains go with SER *losses*
    qm, sm = quality_means(res), ser_means(res)
    tables = quality_tables(qm, sm, {})
    (t,) = tables
    assert [r["label"] for r in t.rows][:2] == [["noisy (input)", "0"], ["noisy (input)", "5"]]
    assert len(t.rows) == 8 and len(t.charts) >= 4
    html = render(tables, tradeoff(tradeoff_points(qm, sm)))
    assert "Closing note" in html and "best predictor of SER benefit" in html
    assert "sign is opposite" in html  # PESQ (or F0 RMSE) predicts, but with the unexpected sign
    assert html.count("<svg") == len(t.charts) + 2  # + scatter plots of the PESQ and F0 RMSE changes (STOI is flat)


@pytest.mark.slow  # two spawned workers importing openSMILE: ~15-40 s on a loaded 2-core machine
def test_quality_stage_in_worker_processes_matches_inline(tmp_path):
    """Same numbers from a 2-process pool (payloads pickled, contexts rebuilt in the workers)."""
    from ser_bench.db import Store
    from ser_bench.runner import run

    extra = ["ser_bench.testing:testing_plugin", "test_quality:Plugin"]
    cfg = qconfig(enhancers=["none", "half"], options={"tones": {"n_speakers": 2, "per_class": 1, "duration_s": 1.0}})
    out = {}
    for kind, jobs in (("inline", 1), ("process", 2)):
        store = Store(str(tmp_path / f"{kind}.db"))
        s = run(cfg, store=store, executor=kind, jobs=jobs, extra_plugins=extra, progress=False,
                cache_dir=str(tmp_path / f"cache-{kind}"))
        assert s.n_failed == 0
        r = store.results_frame()
        out[kind] = r[r.kind == "quality"].set_index(["enhancer", "metric"]).value.sort_index()
    assert len(out["inline"]) > 20
    assert np.allclose(out["inline"].to_numpy(), out["process"].to_numpy())
    assert list(out["inline"].index) == list(out["process"].index)
