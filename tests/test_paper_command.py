"""``bench paper``: the experiments the given corpora allow, skipped ones with the flag that enables
them, the enhancer choice, --dry-run cell counts, and one tiny real run."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from ser_bench import Enhancer, hookimpl
from ser_bench.cli import cli
from ser_bench.errors import ConfigError
from ser_bench.paper import EXPERIMENTS, best_enhancer, make_plan


def write_tone(path, seconds=0.3, freq=220.0, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Tiny corpora in the layouts of EMO-DB (3 speakers x 6 classes), RAVDESS (2 actors) and
    RECOLA (synthetic, 2/1/1 recordings of 8 s), and a noise folder."""
    from ser_bench_plugins.recola import write_synthetic_recola

    base = tmp_path_factory.mktemp("paper")
    for i, spk in enumerate(["03", "08", "16"]):
        for j, letter in enumerate("WLAFTN"):
            write_tone(base / "emodb" / "wav" / f"{spk}a0{j + 1}{letter}a.wav", 0.3 + 0.01 * (i + j), 150 + 60 * j)
    for actor in ("01", "02"):
        for j, emo in enumerate(("05", "07", "06", "03", "04", "08")):
            write_tone(base / "ravdess" / f"Actor_{actor}" / f"03-01-{emo}-01-01-01-{actor}.wav", freq=150 + 60 * j)
    write_synthetic_recola(base / "recola", n_train=2, n_dev=1, n_test=1, seconds=8)
    rng = np.random.default_rng(0)
    for i in range(8):
        (base / "noise").mkdir(exist_ok=True)
        sf.write(str(base / "noise" / f"n{i}.wav"), (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return base


def registry(*extra, pretrained: bool = False):
    """Built-ins (without the pretrained enhancers unless asked: the tests bring their own) + ``extra``."""
    from ser_bench import plugins as P

    builtins = [b for b in P.BUILTIN_PLUGINS if pretrained or b != "ser_bench_plugins.pretrained"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(P, "BUILTIN_PLUGINS", builtins)
        return P.build_registry(P.make_plugin_manager(entry_points=False, extra=list(extra)))


def bench(*args):
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def test_dry_run_lists_every_experiment_with_its_cells(roots):
    code, out = bench("paper", "--data-root", f"emodb={roots / 'emodb'}", "--data-root", f"ravdess={roots / 'ravdess'}",
                      "--data-root", f"recola={roots / 'recola'}", "--noise-root", str(roots / "noise"),
                      "--snr", "0", "--enhancer", "wiener", "--dry-run")
    assert code == 0, out
    lines = {ln.split()[1] + " " + ln.split()[2]: ln for ln in out.splitlines() if ln.startswith(("run ", "skip "))}
    # 2 SVMs x 3 speakers x (clean + noisy + wiener) ; RAVDESS: 2 actors
    assert lines["emodb matched"].startswith("run") and " 18 cells" in lines["emodb matched"]
    assert " 18 cells" in lines["emodb mismatched"] and "Tables 3, 5" in lines["emodb mismatched"]
    assert " 12 cells" in lines["ravdess matched"] and " 12 cells" in lines["ravdess mismatched"]
    # end-to-end model, official partitions: clean + noisy + wiener; multi-SNR at the one SNR asked
    assert " 3 cells" in lines["recola mismatched"] and " 3 cells" in lines["recola multi-snr"]
    assert lines["enterface matched"].startswith("skip") and "ravdess stands in" in lines["enterface matched"]
    assert "66 cells in 6 experiments; 2 skipped" in out
    assert "enhancers: wiener" in out


def test_missing_corpora_are_skipped_with_the_flag_that_enables_them(roots):
    code, out = bench("paper", "--data-root", f"emodb={roots / 'emodb'}", "--noise-root", str(roots / "noise"),
                      "--snr", "20", "--enhancer", "wiener", "--dry-run")
    assert code == 0, out
    assert "skip  recola mismatched" in out and "pass --data-root recola=PATH" in out
    assert "pass --data-root enterface=PATH (or ravdess=PATH to stand in for it)" in out
    assert "ravdess matched" not in out  # a stand-in nobody asked for is not listed
    assert "36 cells in 2 experiments; 4 skipped" in out


def test_unknown_corpus_name_is_a_clear_error(roots):
    code, out = bench("paper", "--data-root", f"emodbx={roots / 'emodb'}", "--dry-run")
    assert code != 0 and "emodbx" in out and "Traceback" not in out


def test_default_enhancers_are_the_papers_and_the_best_available(roots):
    plan = make_plan({"emodb": str(roots / "emodb")}, registry=registry(), options={"folder": {"root": str(roots)}})
    assert plan.enhancers == ["rescnn", "wiener"] and plan.best_enhancer == "wiener"
    (matched, mismatched) = plan.planned
    assert matched.config.enhancers == ["none", "rescnn", "wiener"]
    assert matched.config.snrs == [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0]  # the paper's, from the suite
    assert matched.config.options["emodb"]["root"] == str(roots / "emodb")
    assert "disgust" not in matched.config.options["emodb"]["classes"]  # the suite's 6 classes


class _DFN(Enhancer):
    name = "deepfilternet"

    def enhance_signal(self, noisy):
        return noisy


class _BrokenDFN(_DFN):
    def __init__(self, **kw):
        raise ImportError("No module named 'df'")


def _plugin(cls):
    class P:
        @hookimpl
        def register_enhancers(self, register):
            register("deepfilternet", cls)

    return P()


def test_best_available_is_deepfilternet_when_it_loads_else_wiener():
    assert best_enhancer(registry(pretrained=True)) in ("wiener", "deepfilternet")  # with the extra or not
    assert best_enhancer(registry()) == "wiener"
    assert best_enhancer(registry(_plugin(_DFN))) == "deepfilternet"
    assert best_enhancer(registry(_plugin(_BrokenDFN))) == "wiener"
    plan = make_plan({}, registry=registry(_plugin(_DFN)))
    assert plan.enhancers == ["rescnn", "deepfilternet"]


def test_quick_preset_and_option_routing(roots):
    plan = make_plan({"emodb": "E", "recola": "R"}, registry=registry(), quick=True,
                     options={"e2e-arousal": {"batch_size": 5}, "svm-egemaps": {"inner_folds": 2}})
    cfg = {p.experiment.name: p.config for p in plan.planned}
    assert cfg["emodb mismatched"].snrs == [0.0, 20.0]
    assert cfg["recola multi-snr"].train_snrs == [5.0, 15.0] == cfg["recola multi-snr"].test_snrs
    assert cfg["recola mismatched"].options["e2e-arousal"]["epochs"] == 5
    assert cfg["recola mismatched"].options["e2e-arousal"]["batch_size"] == 5
    # options only reach the experiments whose plugins use them
    assert "e2e-arousal" not in cfg["emodb matched"].options and "svm-egemaps" not in cfg["recola mismatched"].options
    plan = make_plan({"recola": "R"}, registry=registry(), snrs=[0, 10])
    assert {p.experiment.name: p.config.train_snrs for p in plan.planned}["recola multi-snr"] == [10.0]


def test_enterface_itself_replaces_its_stand_in():
    plan = make_plan({"enterface": "E", "ravdess": "R"}, registry=registry())
    assert [p.experiment.dataset for p in plan.planned] == ["enterface", "enterface"]
    assert {e.dataset for e, why in plan.skipped if "not needed" in why} == {"ravdess"}
    assert {e.dataset for e in EXPERIMENTS} == {"emodb", "enterface", "ravdess", "recola"}


def test_missing_suites_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="--suites"):
        make_plan({"emodb": "E"}, registry=registry(), suites_dir=tmp_path / "nope")


@pytest.mark.slow  # ~40 s on a loaded 2-core machine (openSMILE, SVM fits, report)
def test_a_tiny_real_run_writes_the_report_with_the_paper_tables(roots, tmp_path):
    db = tmp_path / "paper.db"
    code, out = bench("paper", "--data-root", f"emodb={roots / 'emodb'}", "--noise-root", str(roots / "noise"),
                      "--snr", "20", "--enhancer", "wiener", "-j", "1", "--db", str(db), "--out", str(tmp_path / "rep"),
                      "--cache", str(tmp_path / "cache"), "-o", "svm-compare.C_grid=[1.0]",
                      "-o", "svm-egemaps.C_grid=[1.0]", "-q")
    assert code == 0, out
    assert "2 experiments run, 4 skipped" in out
    assert "Table 2 · EMO-DB" in out and "Table 5 · EMO-DB" in out
    # then the results table of its two runs (-q: the only thing on stdout)
    assert "emodb · matched · noise folder · UAR %" in out and "emodb · mismatched · noise folder · UAR %" in out
    # 3 speakers with 6 classes: the paper's classes, but the corpus size is noted
    assert "ours 18 utterances from 3 speakers" in out
    assert "not differenced: ours has 18 utterances from 3 speakers, the paper's EMO-DB 465 from 10" in out
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Table 5" in html and "paper-figure" in html and '<td class="num paper">53.49</td>' in html
