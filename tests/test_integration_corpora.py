"""The real-corpus loaders on ../shared/data (EMO-DB, RAVDESS). Skipped when it is absent."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ser_bench_plugins.emodb import EmoDB
from ser_bench_plugins.ravdess import Ravdess

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EMODB = DATA / "emodb"
RAVDESS = DATA / "ravdess"
needs_emodb = pytest.mark.skipif(not (EMODB / "wav").is_dir(), reason=f"EMO-DB not found at {EMODB}")
needs_ravdess = pytest.mark.skipif(not RAVDESS.is_dir(), reason=f"RAVDESS not found at {RAVDESS}")


@needs_emodb
def test_emodb_shared_copy():
    ds = EmoDB(root=EMODB)
    utts = ds.utterances()
    assert len(utts) == 535 - 46  # 46 disgust utterances left out by the 6-class default
    assert len({u.speaker for u in utts}) == 10
    assert Counter(u.label for u in utts)["anger"] == 127
    assert "degraded" in ds.notes  # the shared copy is cut/padded to 2.00 s
    x = utts[0].load()
    assert x.dtype == np.float32 and x.shape == (32000,)
    full = EmoDB(root=EMODB, classes=["anger", "boredom", "disgust", "fear", "joy", "sadness", "neutral"])
    assert len(full.utterances()) == 535


@needs_ravdess
def test_ravdess_shared_copy():
    ds = Ravdess(root=RAVDESS)
    utts = ds.utterances()
    assert len(utts) == 24 * 6 * 8  # 6 eNTERFACE classes x 2 intensities x 2 statements x 2 repetitions
    assert len({u.speaker for u in utts}) == 24
    assert set(Counter(u.label for u in utts).values()) == {192}
    assert len(Ravdess(root=RAVDESS, label_set="full").utterances()) == 1440
    assert utts[0].load().ndim == 1


@pytest.mark.slow
@needs_emodb
def test_emodb_clean_suite_end_to_end(tmp_path):
    """The mismatched suite at one SNR, no enhancer, eGeMAPS only: runs, stores, and shows its clean
    and noisy rows beside the paper's Table 5 (a paper table needs its protocol's noisy results)."""
    from click.testing import CliRunner

    from ser_bench.cli import cli
    from ser_bench.db import Store
    from ser_bench.report.paper import section

    suite = Path(__file__).resolve().parents[1] / "benchmarks" / "emodb_mismatched.toml"
    db = str(tmp_path / "r.db")
    res = CliRunner().invoke(cli, ["run", "mismatched", "--suite", str(suite), "--ser-model", "svm-egemaps",
                                   "--enhancer", "none", "--snr", "20",
                                   "--data-root", f"emodb={EMODB}", "-o", f"folder.root={DATA / 'noise'}", "--db", db, "--cache", str(tmp_path / "cache"),
                                   "-j", "1", "--executor", "inline", "-q"], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    df = Store(db).results_frame()
    clean = df[(df.metric == "uar") & (df.test_condition == "clean")]
    assert len(clean) == 10  # one per LOSO fold
    assert 0.45 < clean.value.mean() < 0.8  # the paper: 61.0 on the full-length corpus
    assert len(df[(df.metric == "uar") & (df.test_condition == "noisy")]) == 10
    sec = section(Store(db))
    assert sec is not None and "Table 5" in sec["html"] and "61.04" in sec["html"] and "53.49" in sec["html"]
    assert "degraded" in sec["html"]
