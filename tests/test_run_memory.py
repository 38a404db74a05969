"""Peak memory is recorded per run (driver and busiest worker), shown by `bench runs show`, and
the per-process feature LRU never holds more than its byte budget (no whole-corpus audio)."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from ser_bench.cli import cli
from ser_bench.db import Store
from ser_bench.executors import PoolExecutor
from ser_bench.runner import run


def test_peak_rss_is_stored_and_shown(registry, tiny_config, tmp_path):
    store = Store(str(tmp_path / "r.db"))
    s = run(tiny_config("mismatched"), store=store, registry=registry, progress=False)
    assert s.peak_rss_mb and 20 < s.peak_rss_mb < 100_000
    assert s.workers_peak_rss_mb and s.workers_peak_rss_mb > 20  # inline: the jobs ran in this process
    row = store.runs_frame().iloc[0]
    assert row.peak_rss_mb == s.peak_rss_mb and row.workers_peak_rss_mb == s.workers_peak_rss_mb
    res = CliRunner().invoke(cli, ["runs", "show", "1", "--db", str(tmp_path / "r.db")])
    shown = json.loads(res.output[: res.output.rindex("}") + 1])
    assert shown["peak_rss_mb"] == s.peak_rss_mb and shown["workers_peak_rss_mb"] == s.workers_peak_rss_mb


def test_worker_processes_report_their_own_peak(tiny_config, tmp_path):
    """Jobs in pool workers (separate processes) bring back their peak RSS."""
    s = run(tiny_config("clean", datasets=["synthetic"], ser_models=["svm-egemaps"], enhancers=["none"],
                        noise_sources=["synthetic-noise"], options={"synthetic": {"per_class": 1}}),
            store=Store(str(tmp_path / "p.db")), executor=PoolExecutor(2), progress=False)
    assert s.n_failed == 0 and s.workers_peak_rss_mb > 20


def test_the_feature_lru_keeps_its_byte_budget(registry, tiny_config, monkeypatch):
    import ser_bench.artefacts as A
    from ser_bench.plan import plan
    from ser_bench.protocols import Condition

    ctx, _, _ = plan(tiny_config("mismatched"), registry)
    ids = list(ctx.utterances("tones"))
    one = ctx.condition_features("tones", "peak", Condition("clean"), ids)
    per_condition = sum(v.nbytes for v in one.values())
    monkeypatch.setattr(A, "FEATURE_LRU_BYTES", int(per_condition * 2.5))
    for snr in (0.0, 20.0):
        for kind, enh in (("noisy", "none"), ("enhanced", "half")):
            ctx.condition_features("tones", "peak", Condition(kind, snr, "white-test", enh), ids)
            held = sum(v.nbytes for d in ctx._feats.values() for v in d.values())
            assert held <= per_condition * 2.5 and len(ctx._feats) <= 2
    assert np.array_equal(ctx.condition_features("tones", "peak", Condition("clean"), ids)[ids[0]], one[ids[0]])
