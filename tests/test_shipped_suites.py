"""The paper's suites ship in the wheel (every benchmarks/*.toml, a new one included), are found by
name (`bench run --suite NAME`, `bench suites`, `bench paper`) without a checkout, and relative
paths follow one rule: in a suite file, relative to the file's folder; on the command line,
relative to the working directory."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from ser_bench import suites
from ser_bench.cli import cli
from ser_bench.errors import ConfigError
from ser_bench.plugins import default_registry

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_tone(path: Path, seconds: float = 0.3, freq: float = 220.0, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def write_noise(folder: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(str(folder / f"n{i}.wav"), (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return folder


def write_emodb(root: Path) -> Path:
    for i, spk in enumerate(["03", "08", "16"]):
        for j, letter in enumerate("WLAFTN"):
            write_tone(root / "wav" / f"{spk}a0{j + 1}{letter}a.wav", 0.3 + 0.01 * (i + j), 150 + 60 * j)
    return root


# --------------------------------------------------------------------------- found by name


def test_every_suite_in_benchmarks_is_shipped_by_name():
    assert set(suites.shipped()) == {p.stem for p in BENCHMARKS.glob("*.toml")}
    assert suites.locate("emodb_mismatched") == suites.locate("emodb_mismatched.toml") == \
        BENCHMARKS / "emodb_mismatched.toml"


def test_a_file_wins_over_a_name_and_a_wrong_name_gets_suggestions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "emodb_mismatched.toml").write_text('protocol = "clean"\n')
    assert suites.locate("emodb_mismatched.toml") == Path("emodb_mismatched.toml")  # the file here
    assert suites.locate("emodb_mismatched") == BENCHMARKS / "emodb_mismatched.toml"  # the shipped one
    with pytest.raises(ConfigError, match="Did you mean emodb_mismatched"):
        suites.locate("emodb_mismatch")
    with pytest.raises(ConfigError, match="the shipped suite of that name is --suite ravdess_matched"):
        suites.locate("some/checkout/benchmarks/ravdess_matched.toml")


def test_bench_suites_lists_every_suite_with_its_cells():
    out = invoke("suites").output
    for p in BENCHMARKS.glob("*.toml"):
        assert re.search(rf"^{re.escape(p.stem)}\s", out, re.M), p.stem
    # emodb_mismatched: 2 models x (clean + 6 SNRs x (noisy + wiener + rescnn)) cells per fold
    assert re.search(r"^emodb_mismatched\s+mismatched\s+emodb\s+38\s", out, re.M)
    one = invoke("suites", "emodb_mismatched").output
    assert "run:  bench run --suite emodb_mismatched --data-root emodb=PATH" in one
    assert one.count("emodb  svm-compare  clean -> ") == 19 and "clean -> enhanced@-5dB/folder/rescnn" in one
    assert invoke("suites", "--path", "recola_multisnr").output.strip() == str(BENCHMARKS / "recola_multisnr.toml")


def test_bench_validate_takes_a_name():
    r = invoke("validate", "ravdess_mismatched")
    assert r.exit_code == 0 and "ok (mismatched" in r.output


# --------------------------------------------------------------------------- relative paths


def test_the_shipped_suites_noise_folder_is_relative_to_the_suite_file():
    for path in BENCHMARKS.glob("*.toml"):
        root = tomllib.loads(path.read_text()).get("options", {}).get("folder", {}).get("root")
        if root is not None:  # the checkout's ../shared/data/noise, seen from benchmarks/
            assert os.path.normpath(BENCHMARKS / root) == str(REPO.parent / "shared" / "data" / "noise"), (
                f"{path.name}: relative paths in a suite are relative to the suite's folder (benchmarks/): "
                f"write root = \"../../shared/data/noise\", not {root!r}")
    _, data = suites.load("emodb_matched", default_registry())
    assert data["options"]["folder"]["root"] == str(REPO.parent / "shared" / "data" / "noise")
    assert data["options"]["emodb"]["classes"][0] == "anger"  # other options untouched


def test_only_path_options_are_resolved(tmp_path):
    (tmp_path / "s.toml").write_text('protocol = "mismatched"\nenhancers = ["none", "rescnn"]\n'
                                     '[options.rescnn]\ncheckpoint = "ck/model.pt"\nmodel = "paper"\n'
                                     '[options.folder]\nroot = "/abs/noise"\n[options.unknown-plugin]\nroot = "x"\n')
    _, data = suites.load(tmp_path / "s.toml", default_registry())
    assert data["options"]["rescnn"] == {"checkpoint": str(tmp_path / "ck" / "model.pt"), "model": "paper"}
    assert data["options"]["folder"]["root"] == "/abs/noise"
    assert data["options"]["unknown-plugin"]["root"] == "x"  # not a plugin: its own error comes later


SMALL = ["--snr", "20", "-o", "synthetic.per_class=1", "-j", "1", "--executor", "inline", "-q"]


def test_a_suite_runs_from_another_folder_and_command_line_paths_follow_the_working_directory(tmp_path,
                                                                                              monkeypatch):
    suite_dir, elsewhere = tmp_path / "suites", tmp_path / "elsewhere"
    write_noise(suite_dir / "noise")
    (suite_dir / "mine.toml").write_text('protocol = "mismatched"\nenhancers = ["none"]\nnoise_sources = ["folder"]\n'
                                         '[options.folder]\nroot = "noise"\n')
    write_noise(elsewhere / "clips")
    monkeypatch.chdir(elsewhere)  # no ./noise here: the suite's "noise" is its own folder's
    common = ["--db", tmp_path / "r.db", "--cache", tmp_path / "cache", *SMALL]
    r = invoke("run", "--suite", suite_dir / "mine.toml", *common)
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.stderr and "synthetic · mismatched · noise folder" in r.stdout
    # on the command line, a relative path is the working directory's
    r = invoke("run", "--suite", suite_dir / "mine.toml", "-o", "folder.root=clips", *common)
    assert r.exit_code == 0, r.output
    r = invoke("run", "--suite", suite_dir / "mine.toml", "-o", "folder.root=noise", *common)
    assert r.exit_code != 0 and "noise folder noise does not exist" in r.output


def test_bench_paper_without_the_noise_folder_says_to_pass_noise_root(tmp_path):
    emodb = write_emodb(tmp_path / "emodb")
    for name in ("emodb_matched.toml", "emodb_mismatched.toml"):  # away from ../../shared
        shutil.copy(BENCHMARKS / name, tmp_path / name)
    r = invoke("paper", "--data-root", f"emodb={emodb}", "--suites", tmp_path, "--dry-run")
    assert r.exit_code != 0 and "pass --noise-root PATH" in r.output and "from emodb_matched.toml" in r.output
    r = invoke("paper", "--data-root", f"emodb={emodb}", "--suites", tmp_path, "--noise-root",
               write_noise(tmp_path / "n"), "--dry-run")
    assert r.exit_code == 0 and "run   emodb matched" in r.output, r.output


# --------------------------------------------------------------------------- the built wheel


def copy_sources(dest: Path) -> Path:
    """The files a wheel is built from, copied (no build/ or *.egg-info lands in the repository)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache")
    for name in ("harness", "plugins", "docs", "examples", "benchmarks"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "setup.py"):
        shutil.copy(REPO / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if shutil.which("pip") is None and not (Path(sys.executable).parent / "pip").exists():
        pytest.skip("pip is needed to build the wheel")
    tmp = tmp_path_factory.mktemp("wheel")
    src = copy_sources(tmp / "src")
    # a suite added tomorrow ships too: nothing lists them
    (src / "benchmarks" / "zz_new_corpus_mismatched.toml").write_text('protocol = "mismatched"\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    return next((tmp / "dist").glob("*.whl"))


def test_the_wheel_ships_every_suite_and_no_benchmark_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n for n in names if n.startswith("ser_bench/_suites/")}
    expected = {f"ser_bench/_suites/{p.name}" for p in BENCHMARKS.glob("*.toml")}
    assert expected <= shipped and "ser_bench/_suites/zz_new_corpus_mismatched.toml" in shipped
    assert not [n for n in shipped if not n.endswith(".toml")]  # benchmarks/*.py stay in the checkout


def test_the_installed_wheel_finds_its_suites_outside_any_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"  # the working directory: no benchmarks/ anywhere near
    work.mkdir()
    emodb, noise = write_emodb(work / "emodb"), write_noise(work / "noise")
    env = {**os.environ, "PYTHONPATH": str(site), "BENCH_DB": str(work / "r.db"), "BENCH_CACHE": str(work / "c")}

    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from ser_bench.cli import cli; cli()", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)

    version = wheel.name.split("-")[1]
    assert bench("--version").stdout.strip() == f"ser-bench, version {version}"
    out = bench("suites").stdout
    assert f"in {site / 'ser_bench' / '_suites'}" in out and "zz_new_corpus_mismatched" in out
    assert bench("suites", "--path", "emodb_mismatched").stdout.strip() == str(
        site / "ser_bench" / "_suites" / "emodb_mismatched.toml")
    r = bench("paper", "--dry-run")
    assert r.returncode == 0 and "0 cells in 0 experiments; 6 skipped" in r.stdout, r.stdout + r.stderr
    r = bench("paper", "--data-root", "emodb=emodb", "--dry-run")  # the suites' noise folder is the checkout's
    assert r.returncode != 0 and "pass --noise-root PATH" in r.stderr
    r = bench("paper", "--data-root", "emodb=emodb", "--noise-root", "noise", "--quick", "--dry-run")
    assert r.returncode == 0 and re.search(r"run   emodb mismatched .* 42 cells", r.stdout), r.stdout + r.stderr
    r = bench("run", "--suite", "emodb_mismatched", "--data-root", "emodb=emodb", "-o", "folder.root=noise",
              "--snr", "20", "--enhancer", "wiener", "--dry-run")
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "18 cells (emodb: 3 folds)", r.stdout + r.stderr
