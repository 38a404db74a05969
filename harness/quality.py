"""Enhancement quality and emotion-preservation measures of one signal against its clean reference.

Quality (what speech-enhancement papers report):

* ``pesq``: wide-band PESQ (ITU-T P.862.2, MOS-LQO, about 1.0 to 4.6), computed by the ``pesq``
  package (python-pesq), a wrapper of the ITU-T P.862 reference C code, mode ``"wb"``.
* ``stoi``: short-time objective intelligibility (Taal et al. 2011), ``pystoi``; 0 to 1.
* ``si_sdr``: scale-invariant signal-to-distortion ratio (Le Roux et al. 2019), dB, own numpy;
  capped at :data:`SI_SDR_CAP_DB` (a perfect, scaled copy of the reference reaches the cap).
* ``snr``: ``10 log10(|s|^2 / |y - s|^2)``, dB (not scale invariant); and, for an enhancer's
  output ``y`` of the noisy input ``x``: ``si_sdr_i = si_sdr(y) - si_sdr(x)``, ``snr_i``.

Emotion preservation (what SER depends on), from openSMILE eGeMAPSv02 low-level descriptors
(10 ms frames) of the reference and of the signal under test:

* ``f0_rmse``: RMS difference of the F0 contour (semitones re 27.5 Hz) on frames voiced in both;
* ``f0_corr``: Pearson correlation of the F0 contours on frames voiced in both;
* ``vuv_error``: share of frames whose voicing decision (F0 > 0) differs;
* ``loudness_corr``: Pearson correlation of the loudness contours (all frames);
* ``hnr_rmse``: RMS difference of the harmonics-to-noise ratio (dB) on frames voiced in both;
* ``alpha_corr``: Pearson correlation of the alpha ratio (spectral balance 50-1000 Hz vs
  1-5 kHz, a voice-quality cue) contours (all frames);
* ``egemaps_dist``: the RMS over the 88 eGeMAPSv02 functionals of the difference between the
  reference's and the test signal's functionals, each standardised by the mean and standard
  deviation of that functional over the dataset's clean utterances and clipped to
  +-:data:`Z_CLIP` (0 = identical). The clip keeps one functional from dominating: the
  coefficient-of-variation functionals (``*_stddevNorm``) explode when a contour's mean nears 0
  (e.g. an MFCC under noise), giving standardised differences in the thousands.

A measure that cannot be computed for a file (PESQ on silence, no frame voiced in both, a
constant contour) raises; :func:`measure` records the error for that measure and goes on.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .interfaces import SAMPLE_RATE

#: Bump when any measure's definition or implementation changes (part of quality cell keys).
QUALITY_VERSION = "1"
SI_SDR_CAP_DB = 150.0
MIN_FRAMES = 5  # frames voiced in both needed for the F0 / HNR measures
Z_CLIP = 10.0  # standardised functional differences are clipped to +-Z_CLIP

LLD_COLUMNS = {
    "f0": "F0semitoneFrom27.5Hz_sma3nz",
    "loudness": "Loudness_sma3",
    "hnr": "HNRdBACF_sma3nz",
    "alpha": "alphaRatio_sma3",
}
#: metric -> (group, higher is better, unit / description)
METRICS: dict[str, tuple[str, bool, str]] = {
    "pesq": ("quality", True, "wide-band PESQ (P.862.2, MOS-LQO)"),
    "stoi": ("quality", True, "STOI (0-1)"),
    "si_sdr": ("quality", True, "SI-SDR (dB)"),
    "snr": ("quality", True, "SNR (dB)"),
    "si_sdr_i": ("quality", True, "SI-SDR improvement over the noisy input (dB)"),
    "snr_i": ("quality", True, "SNR improvement over the noisy input (dB)"),
    "f0_rmse": ("preservation", False, "F0 contour RMSE on frames voiced in both (semitones)"),
    "f0_corr": ("preservation", True, "F0 contour correlation on frames voiced in both"),
    "vuv_error": ("preservation", False, "voicing decision error (share of frames)"),
    "loudness_corr": ("preservation", True, "loudness contour correlation"),
    "hnr_rmse": ("preservation", False, "HNR contour RMSE on frames voiced in both (dB)"),
    "alpha_corr": ("preservation", True, "alpha-ratio (spectral balance) contour correlation"),
    "egemaps_dist": ("preservation", False, "standardised eGeMAPS functional distance (RMS z)"),
}
HIGHER_IS_BETTER = {m: hib for m, (_, hib, _) in METRICS.items()}


class MeasureError(ValueError):
    """A measure is undefined for this pair of signals (too few voiced frames, a constant contour)."""


def pesq_implementation() -> str:
    try:
        from importlib.metadata import version

        v = version("pesq")
    except Exception:  # noqa: BLE001
        v = "?"
    return f"pesq {v} (python-pesq wrapping the ITU-T P.862 reference C code), mode 'wb' = P.862.2 wide band"


def implementation_ids() -> dict[str, str]:
    """Versions of the libraries behind the measures (part of quality cell keys)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"quality": QUALITY_VERSION}
    for dist in ("pesq", "pystoi", "opensmile"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


# ----------------------------------------------------------------------------- signal measures


def _pair(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ref, dtype=np.float64).ravel()
    e = np.asarray(est, dtype=np.float64).ravel()
    n = min(len(r), len(e))
    if n == 0:
        raise MeasureError("empty signal")
    return r[:n], e[:n]


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB (zero-mean signals; capped at :data:`SI_SDR_CAP_DB`)."""
    r, e = _pair(ref, est)
    r = r - r.mean()
    e = e - e.mean()
    rr = float(r @ r)
    if rr == 0.0:
        raise MeasureError("the reference is silent")
    target = (float(e @ r) / rr) * r
    noise = e - target
    t2, n2 = float(target @ target), float(noise @ noise)
    if t2 == 0.0:
        return -SI_SDR_CAP_DB
    floor = t2 * 10.0 ** (-SI_SDR_CAP_DB / 10.0)
    return float(min(SI_SDR_CAP_DB, 10.0 * np.log10(t2 / max(n2, floor))))


def snr(ref: np.ndarray, est: np.ndarray) -> float:
    """``10 log10(|ref|^2 / |est - ref|^2)`` in dB (capped like SI-SDR)."""
    r, e = _pair(ref, est)
    s2 = float(r @ r)
    if s2 == 0.0:
        raise MeasureError("the reference is silent")
    d = e - r
    n2 = max(float(d @ d), s2 * 10.0 ** (-SI_SDR_CAP_DB / 10.0))
    return float(10.0 * np.log10(s2 / n2))


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (P.862.2) of ``est`` against ``ref`` (raises on silence, like the C code)."""
    from pesq import pesq

    r, e = _pair(ref, est)
    if not np.any(e):
        raise MeasureError("the signal under test is digital silence")
    return float(pesq(sr, r, e, "wb"))


def stoi(ref: np.ndarray, est: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    from pystoi import stoi as _stoi

    r, e = _pair(ref, est)
    return float(_stoi(r, e, sr, extended=False))


# ----------------------------------------------------------------------------- openSMILE

_SMILES: dict[str, Any] = {}


def _smile(level: str) -> Any:
    import opensmile

    if level not in _SMILES:
        _SMILES[level] = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02,
            feature_level=getattr(opensmile.FeatureLevel, level),
        )
    return _SMILES[level]


def lld_key() -> str:
    import opensmile

    return f"opensmile-{opensmile.__version__}:eGeMAPSv02:lld:{','.join(LLD_COLUMNS.values())}"


def functionals_key() -> str:
    """Same key (and values) as the ``svm-egemaps`` SER model's features, so the cache is shared."""
    import opensmile

    return f"opensmile-{opensmile.__version__}:eGeMAPSv02:functionals"


def egemaps_lld(audio: np.ndarray) -> np.ndarray:
    """frames x len(LLD_COLUMNS) eGeMAPSv02 low-level descriptors (F0 = 0 on unvoiced frames)."""
    df = _smile("LowLevelDescriptors").process_signal(np.asarray(audio, dtype=np.float32), SAMPLE_RATE)
    return df[list(LLD_COLUMNS.values())].to_numpy(dtype=np.float64)


def egemaps_functionals(audio: np.ndarray) -> np.ndarray:
    """The 88 eGeMAPSv02 functionals (NaN/inf -> 0, float32: identical to ``svm-egemaps``)."""
    vals = _smile("Functionals").process_signal(np.asarray(audio, dtype=np.float32), SAMPLE_RATE).to_numpy()[0]
    return np.nan_to_num(vals.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _corr(a: np.ndarray, b: np.ndarray, what: str) -> float:
    if len(a) < MIN_FRAMES:
        raise MeasureError(f"{what}: only {len(a)} frame(s) to correlate (need {MIN_FRAMES})")
    if np.std(a) == 0 or np.std(b) == 0:
        raise MeasureError(f"{what}: a contour is constant, the correlation is undefined")
    return float(np.corrcoef(a, b)[0, 1])


def contour_fidelity(ref_lld: np.ndarray, test_lld: np.ndarray) -> dict[str, Callable[[], float]]:
    """The contour measures as deferred computations (each may raise :class:`MeasureError`)."""
    n = min(len(ref_lld), len(test_lld))
    cols = list(LLD_COLUMNS)
    R, T = ref_lld[:n], test_lld[:n]
    f0r, f0t = R[:, cols.index("f0")], T[:, cols.index("f0")]
    both = (f0r > 0) & (f0t > 0)

    def voiced(c: str) -> tuple[np.ndarray, np.ndarray]:
        if both.sum() < MIN_FRAMES:
            raise MeasureError(f"only {int(both.sum())} frame(s) voiced in both (need {MIN_FRAMES})")
        return R[both, cols.index(c)], T[both, cols.index(c)]

    def rmse(c: str) -> float:
        a, b = voiced(c)
        return float(np.sqrt(np.mean((a - b) ** 2)))

    def vuv() -> float:
        if n == 0:
            raise MeasureError("no frames")
        return float(np.mean((f0r > 0) != (f0t > 0)))

    return {
        "f0_rmse": lambda: rmse("f0"),
        "f0_corr": lambda: _corr(*voiced("f0"), "F0"),
        "vuv_error": vuv,
        "loudness_corr": lambda: _corr(R[:, cols.index("loudness")], T[:, cols.index("loudness")], "loudness"),
        "hnr_rmse": lambda: rmse("hnr"),
        "alpha_corr": lambda: _corr(R[:, cols.index("alpha")], T[:, cols.index("alpha")], "alpha ratio"),
    }


def functional_stats(clean_functionals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each functional over a dataset's clean utterances."""
    X = np.asarray(clean_functionals, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise MeasureError(f"need the functionals of >= 2 clean utterances, got shape {X.shape}")
    return X.mean(axis=0), X.std(axis=0, ddof=1)


def functional_distance(ref_f: np.ndarray, test_f: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """RMS over functionals of the standardised difference, clipped to +-Z_CLIP (functionals
    constant on the clean set are skipped)."""
    std = np.asarray(std, dtype=np.float64)
    keep = std > 1e-9 * (1.0 + np.abs(np.asarray(mean, dtype=np.float64)))
    if not keep.any():
        raise MeasureError("every functional is constant over the clean set")
    z = (np.asarray(test_f, dtype=np.float64)[keep] - np.asarray(ref_f, dtype=np.float64)[keep]) / std[keep]
    return float(np.sqrt(np.mean(np.clip(z, -Z_CLIP, Z_CLIP) ** 2)))


# ----------------------------------------------------------------------------- one utterance


def measure(
    ref: np.ndarray,
    test: np.ndarray,
    *,
    noisy: np.ndarray | None = None,
    ref_lld: np.ndarray | None = None,
    test_lld: np.ndarray | None = None,
    ref_func: np.ndarray | None = None,
    test_func: np.ndarray | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Every measure of ``test`` against ``ref``: (values, errors), one entry per measure.

    ``noisy`` (the enhancer's input) adds the improvements ``si_sdr_i`` and ``snr_i``. The LLDs
    and functionals are computed here when not given; ``egemaps_dist`` needs ``stats``.
    """
    values: dict[str, float] = {}
    errors: dict[str, str] = {}

    def attempt(name: str, fn: Callable[[], float]) -> None:
        try:
            v = float(fn())
            if not np.isfinite(v):
                raise MeasureError(f"non-finite value {v}")
            values[name] = v
        except Exception as exc:  # noqa: BLE001 - recorded per file and measure
            errors[name] = f"{type(exc).__name__}: {exc}".strip()

    attempt("pesq", lambda: pesq_wb(ref, test))
    attempt("stoi", lambda: stoi(ref, test))
    attempt("si_sdr", lambda: si_sdr(ref, test))
    attempt("snr", lambda: snr(ref, test))
    if noisy is not None:
        attempt("si_sdr_i", lambda: si_sdr(ref, test) - si_sdr(ref, noisy))
        attempt("snr_i", lambda: snr(ref, test) - snr(ref, noisy))
    try:
        rl = egemaps_lld(ref) if ref_lld is None else ref_lld
        tl = egemaps_lld(test) if test_lld is None else test_lld
        for name, fn in contour_fidelity(rl, tl).items():
            attempt(name, fn)
    except Exception as exc:  # noqa: BLE001
        for name in ("f0_rmse", "f0_corr", "vuv_error", "loudness_corr", "hnr_rmse", "alpha_corr"):
            errors[name] = f"low-level descriptors: {type(exc).__name__}: {exc}"
    if stats is not None:
        attempt("egemaps_dist", lambda: functional_distance(
            egemaps_functionals(ref) if ref_func is None else ref_func,
            egemaps_functionals(test) if test_func is None else test_func, *stats))
    return values, errors
