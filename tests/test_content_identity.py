"""Keys follow the audio's content, not where the files lie or when they were copied."""
from __future__ import annotations

import os
import shutil

import numpy as np
import soundfile as sf

from ser_bench.interfaces import file_fingerprint
from ser_bench_plugins.generic import FolderDataset
from ser_bench_plugins.noise_folder import FolderNoise
from ser_bench.testing import speech_like

SR = 16_000


def _corpus(root):
    for label, f0 in (("low", 0), ("high", 1)):
        for spk in ("s1", "s2", "s3"):
            d = root / label / spk
            d.mkdir(parents=True)
            for i in range(2):
                sf.write(d / f"{i}.wav", speech_like(0.5, seed=100 * f0 + 10 * int(spk[1]) + i), SR, subtype="FLOAT")
    noise = root.parent / (root.name + "-noise")
    noise.mkdir()
    for i in range(4):
        sf.write(noise / f"n{i}.wav", np.random.default_rng(i).standard_normal(SR).astype(np.float32) * 0.1, SR,
                 subtype="FLOAT")
    return root, noise


def test_a_copied_corpus_keeps_its_identity_and_an_edited_file_changes_it(tmp_path):
    a, na = _corpus(tmp_path / "a")
    b, nb = tmp_path / "elsewhere" / "b", tmp_path / "elsewhere" / "b-noise"
    shutil.copytree(a, b)
    shutil.copytree(na, nb)
    os.utime(b / "low" / "s1" / "0.wav", ns=(1, 1))  # a copy's times differ: they must not matter
    ida, idb = FolderDataset(root=a).identity(), FolderDataset(root=str(b)).identity()
    assert ida == idb and "root" not in ida["config"]
    assert FolderNoise(root=na).identity() == FolderNoise(root=nb).identity()
    # an edited file (same size, same name) is another corpus
    f = b / "high" / "s2" / "1.wav"
    x, _ = sf.read(f, dtype="float32")
    sf.write(f, -x, SR, subtype="FLOAT")
    assert FolderDataset(root=b).identity() != ida
    g = nb / "n2.wav"
    sf.write(g, -sf.read(g, dtype="float32")[0], SR, subtype="FLOAT")
    assert FolderNoise(root=nb).identity() != FolderNoise(root=na).identity()
    assert file_fingerprint(f) != file_fingerprint(a / "high" / "s2" / "1.wav")


def test_a_run_on_a_copy_of_the_corpus_recomputes_nothing(tmp_path):
    from ser_bench.config import RunConfig
    from ser_bench.db import Store
    from ser_bench.plugins import default_registry
    from ser_bench.runner import run

    a, na = _corpus(tmp_path / "a")
    b, nb = tmp_path / "b", tmp_path / "b-noise"
    shutil.copytree(a, b)
    shutil.copytree(na, nb)

    def cfg(root, noise):
        return RunConfig(protocol="mismatched", datasets=["folder-dataset"], ser_models=["svm-egemaps"],
                         enhancers=["wiener"], noise_sources=["folder"], snrs=[5.0],
                         options={"folder-dataset": {"root": str(root), "speaker_regex": "^(s\\d)/"},
                                  "folder": {"root": str(noise), "split": "all"}})

    store = Store(str(tmp_path / "r.db"))
    kw = dict(store=store, registry=default_registry(), executor="inline", progress=False,
              cache_dir=str(tmp_path / "cache"))
    first = run(cfg(a, na), **kw)
    assert first.n_failed == 0 and first.n_done > 0
    shutil.rmtree(a)  # the original is gone: only the copy is left
    again = run(cfg(b, nb), **kw)
    assert again.n_failed == 0 and again.n_done == 0 and again.n_skipped == first.n_done
