import json

import pytest
from click.testing import CliRunner

from ser_bench.cli import cli
from ser_bench.db import Store

SMALL = ["--snr", "0", "--snr", "20", "-o", "synthetic.per_class=2", "-j", "1", "-q"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_dry_run_prints_cells_and_count():
    r = invoke("run", "mismatched", "--dry-run", "--snr", "0", "--snr", "10")
    assert r.exit_code == 0, r.output
    # 6 LOSO folds x (clean + 2 SNRs x (noisy + wiener))
    assert r.output.strip().splitlines()[-1].startswith("30 cells (synthetic: 6 folds)")
    assert "clean -> noisy@10dB/synthetic-noise" in r.output
    assert Store().count("results") == 0


def test_run_then_rerun_then_report(tmp_path):
    r = invoke("run", "mismatched", *SMALL)
    assert r.exit_code == 0, r.output
    store = Store()
    n = store.count("results")
    assert n == 30 * 2  # uar + accuracy per cell
    r2 = invoke("run", "mismatched", *SMALL)
    assert "0 computed, 30 already stored" in r2.output
    assert store.count("results") == n
    r3 = invoke("report", "--out", str(tmp_path / "rep"))
    assert r3.exit_code == 0 and (tmp_path / "rep" / "index.html").exists()
    r4 = invoke("runs", "list")
    assert "done" in r4.output and "cells 30/30" in r4.output
    r5 = invoke("runs", "show", "1")
    assert '"protocol": "mismatched"' in r5.output and "SNR = 10*log10" in r5.output


def test_unknown_names_and_bad_options_are_clear_errors():
    r = CliRunner().invoke(cli, ["run", "mismatched", "--enhancer", "weiner"])
    assert r.exit_code != 0 and "Did you mean 'wiener'" in r.output
    r = CliRunner().invoke(cli, ["run", "mismatched", "--snr", "999", "--dry-run"])
    assert r.exit_code != 0 and "SNR 999.0 dB is outside" in r.output
    r = CliRunner().invoke(cli, ["run", "mismatched", "-o", "nodot=1"])
    assert r.exit_code != 0 and "PLUGIN.KEY=VALUE" in r.output
    r = CliRunner().invoke(cli, ["run"])
    assert r.exit_code != 0 and "give a PROTOCOL" in r.output


def test_plugins_lists_versions():
    r = invoke("plugins", "--json")
    rows = json.loads(r.output)
    names = {(x["kind"], x["name"]): x for x in rows}
    assert names[("enhancer", "wiener")]["distribution"] == "ser-bench"
    assert names[("ser_model", "svm-egemaps")]["version"]


def test_plugins_shows_a_wrapper_bound_to_a_plugin():
    """`bench plugins guarded-wiener`: what `--enhancer guarded-wiener` takes, with its options."""
    out = invoke("plugins", "guarded-wiener").output
    assert out.startswith("guarded-wiener  (enhancer;") and "wiener, wrapped by guarded-*" in out
    assert "-o guarded-wiener.KEY=VALUE" in out and "backstop" in out
    r = CliRunner().invoke(cli, ["plugins", "guarded-wienr"])
    assert r.exit_code != 0 and "unknown plugin 'guarded-wienr'" in r.output


def test_validate_suite(tmp_path):
    good = tmp_path / "s.toml"
    good.write_text('protocol = "matched"\nsnrs = [0, 10]\n[options.synthetic]\nper_class = 2\n')
    assert "ok (matched" in invoke("validate", str(good)).output
    bad = tmp_path / "b.toml"
    bad.write_text('protocol = "matched"\nenhancers = ["wienr"]\n')
    r = CliRunner().invoke(cli, ["validate", str(bad)])
    assert r.exit_code != 0 and "Did you mean 'wiener'" in r.output


def test_flags_replacing_a_suites_plugins_drop_its_options_for_them(tmp_path):
    """`--enhancer` replacing a suite's enhancers leaves the suite's options for the dropped ones
    out (with a note) instead of failing; `-o` for a plugin the run does not use is still an error."""
    from click.testing import CliRunner

    from ser_bench.cli import cli

    suite = tmp_path / "s.toml"
    suite.write_text('protocol = "mismatched"\nenhancers = ["none", "guarded-wiener"]\nsnrs = [0]\n'
                     '[options.guarded-wiener]\nharm_weight = 2.0\n[options.wiener]\ngain_floor_db = -20\n')
    r = CliRunner().invoke(cli, ["run", "--suite", str(suite), "--enhancer", "wiener", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "suite's options for guarded-wiener are not used by this run" in r.output
    assert "enhanced@0dB/synthetic-noise/wiener" in r.output
    # the suite as written names no `wiener`: its options for it are the suite's own mistake
    r = CliRunner().invoke(cli, ["run", "--suite", str(suite), "--dry-run"])
    assert r.exit_code != 0 and "options given for plugins that this run does not use: wiener" in r.output
    r = CliRunner().invoke(cli, ["run", "--suite", str(suite), "--enhancer", "wiener", "-o",
                                 "guarded-wiener.harm_weight=1", "--dry-run"])
    assert r.exit_code != 0 and "options given for plugins that this run does not use: guarded-wiener" in r.output
