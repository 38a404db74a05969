"""Every suite in benchmarks/*.toml is a valid RunConfig naming registered plugins with valid options."""
from __future__ import annotations

from pathlib import Path

import pytest

from ser_bench.config import load_suite, validate_suite
from ser_bench.errors import ConfigError
from ser_bench.plugins import build_registry, make_plugin_manager

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SUITES = sorted(BENCHMARKS.glob("*.toml"))
KINDS = (("dataset", "datasets"), ("ser_model", "ser_models"), ("enhancer", "enhancers"), ("noise_source", "noise_sources"))


@pytest.fixture(scope="module")
def registry():
    return build_registry(make_plugin_manager(entry_points=False))


def test_the_paper_suites_exist():
    names = {p.name for p in SUITES}
    for ds in ("emodb", "enterface", "ravdess"):
        for proto in ("matched", "mismatched"):
            assert f"{ds}_{proto}.toml" in names


@pytest.mark.parametrize("path", SUITES, ids=[p.name for p in SUITES])
def test_suite_is_valid(path, registry):
    raw = load_suite(path)
    assert "protocol" in raw, f"{path.name} must set its protocol"
    cfg = validate_suite(path)
    for kind, field in KINDS:
        names = getattr(cfg, field)
        registry.check(kind, names)
        for n in names:  # each plugin's options validate (without touching any data)
            registry.get(kind, n).Config(**cfg.plugin_options(n))
    from ser_bench.corruptions import names as corruption_names
    from ser_bench.corruptions import parse_chain, validate_params

    for chain in cfg.corruptions:  # corruption steps: registered, valid parameters and options
        for step in parse_chain(chain):
            cls = registry.get("corruption", step.name)
            cls.Config(**cfg.plugin_options(step.name))
            if step.name != "noise":  # its source is filled in from the run's noise sources
                validate_params(cls.__new__(cls), step)
    # options only for plugins the suite uses (a typo in a plugin name would be ignored silently)
    used = {n for _, f in KINDS for n in getattr(cfg, f)} | set(corruption_names(cfg))
    assert set(cfg.options) <= used, f"{path.name}: options for unused plugins {set(cfg.options) - used}"


@pytest.mark.parametrize("name", ["emodb_mismatched.toml", "emodb_matched.toml"])
def test_emodb_suites_use_the_papers_six_classes(name):
    cfg = validate_suite(BENCHMARKS / name)
    assert cfg.datasets == ["emodb"] and cfg.cv == "loso"
    assert set(cfg.ser_models) == {"svm-egemaps", "svm-compare"}
    assert "disgust" not in cfg.options["emodb"]["classes"] and len(cfg.options["emodb"]["classes"]) == 6


def test_ravdess_suites_use_the_enterface_mapping():
    for proto in ("matched", "mismatched"):
        cfg = validate_suite(BENCHMARKS / f"ravdess_{proto}.toml")
        assert cfg.protocol == proto and cfg.options["ravdess"]["label_set"] == "enterface6"


def test_a_broken_suite_is_rejected(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('protocol = "mismatched"\ndatasets = ["emodb"]\nsnrs = [5, 5]\n')
    with pytest.raises(ConfigError, match="duplicate SNRs"):
        validate_suite(bad)


@pytest.mark.parametrize("dataset", ["iemocap", "msp-podcast", "crema-d", "esd", "tess", "savee", "shemo"])
def test_every_corpus_has_its_two_suites(dataset):
    for proto in ("matched", "mismatched"):
        cfg = validate_suite(BENCHMARKS / f"{dataset.replace('-', '_')}_{proto}.toml")
        assert cfg.protocol == proto and cfg.datasets == [dataset]
        assert cfg.cv == {"iemocap": "dataset", "msp-podcast": "partition", "crema-d": "dataset",
                          "shemo": "dataset"}.get(dataset, "loso")
