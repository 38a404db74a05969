"""A user finds options, docs and fixes from `bench` itself: plugin options, installed docs, errors, start-up."""
from __future__ import annotations

import json
import os
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

from ser_bench.cli import cli
from ser_bench.plugininfo import options
from ser_bench.plugins import default_registry

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "scipy", "opensmile", "pandas", "sklearn", "sqlalchemy", "audformat", "matplotlib")


def bench(*args: str, ok: bool = True):
    res = CliRunner().invoke(cli, list(args))
    if ok:
        assert res.exit_code == 0, res.output
    return res


# --------------------------------------------------------------------------- options


def test_bench_plugins_name_lists_every_option():
    out = bench("plugins", "folder-dataset").output
    assert "folder-dataset  (dataset; ser-bench" in out and "class ser_bench_plugins.generic.FolderDataset" in out
    assert "-o folder-dataset.KEY=VALUE" in out
    assert "    speaker_regex: str | null = null\n" in out
    assert "Regex searched in the path below the label folder" in out  # from the `#:` comment
    wiener = json.loads(bench("plugins", "wiener", "--json").output)
    assert len(wiener) == 1
    opts = {o["name"]: o for o in wiener[0]["options"]}
    assert opts["gain_floor_db"] == {"name": "gain_floor_db", "type": "float (>= -60, <= 0)", "default": "-15.0",
                                     "description": "lowest gain (dB)"}
    from ser_bench_plugins.classic import Wiener

    assert set(opts) == set(Wiener.Config.model_fields)


def test_unknown_plugin_name_suggests():
    res = bench("plugins", "foldr-dataset", ok=False)
    assert res.exit_code == 1 and "unknown plugin 'foldr-dataset'. Did you mean 'folder-dataset'" in res.output


def test_every_builtin_option_is_described():
    missing = [f"{e.name}.{o.name}" for e in default_registry().entries() for o in options(e.resolve())
               if len(o.description) < 8]
    assert missing == []


def test_options_of_all_plugins():
    rows = json.loads(bench("plugins", "--options", "--json").output)
    by_name = {r["name"]: r for r in rows}
    assert {o["name"] for o in by_name["e2e-cls"]["options"]} >= {"epochs", "class_weight"}
    assert {o["name"]: o["default"] for o in by_name["synthetic"]["options"]}["per_class"] == "6"


# --------------------------------------------------------------------------- errors name the option


def _flat_corpus(root: Path) -> Path:
    """Two label folders of files with the speaker in the file name only (no speaker folders)."""
    rng = np.random.default_rng(0)
    for label in ("calm", "angry"):
        for spk in ("m01", "f02"):
            (root / label).mkdir(parents=True, exist_ok=True)
            sf.write(root / label / f"{spk}-take1.wav", (0.1 * rng.standard_normal(4000)).astype(np.float32), 16000)
    return root


def test_loso_error_names_the_speaker_option(tmp_path):
    root = _flat_corpus(tmp_path / "corpus")
    args = ["run", "mismatched", "--dataset", "folder-dataset", "--data-root", f"folder-dataset={root}", "--dry-run"]
    res = bench(*args, ok=False)
    assert res.exit_code == 1
    assert "has 1 speaker(s) ('unknown')" in res.output
    assert "-o folder-dataset.speaker_regex=..." in res.output and "bench plugins folder-dataset" in res.output
    # the option it names fixes it
    res = bench(*args, "-o", r"folder-dataset.speaker_regex=^(\w+)-")
    assert "spk:f02" in res.output and "spk:m01" in res.output


def test_invalid_options_point_to_bench_plugins():
    res = bench("run", "mismatched", "--enhancer", "wiener", "-o", "wiener.gain_floor=-20", "--dry-run", ok=False)
    assert "Allowed options: " in res.output and "`bench plugins wiener` describes them" in res.output


# --------------------------------------------------------------------------- docs an installed user can read


def test_bench_docs_prints_the_guide_and_the_example():
    assert "writing-a-plugin" in bench("docs").output and "example" in bench("docs").output
    guide = (REPO / "docs" / "writing-a-plugin.md").read_text()
    assert bench("docs", "plugin").output.rstrip("\n") == guide.rstrip("\n")
    assert bench("docs", "writing-a-plugin").output == bench("docs", "plugin").output
    example = REPO / "examples" / "ser-bench-example"
    assert Path(bench("docs", "--path", "example").output.strip()) == example
    out = bench("docs", "example").output
    for path in ("README.md", "pyproject.toml", "src/ser_bench_example/__init__.py", "tests/test_plugins.py"):
        assert f"==> {path} <==\n{(example / path).read_text()}" in out
    res = bench("docs", "nope", ok=False)
    assert res.exit_code == 1 and "no docs topic 'nope'" in res.output


def test_help_points_to_installed_docs():
    out = bench("--help").output
    assert "bench docs" in out and "docs/writing-a-plugin.md" not in out
    assert "bench docs plugin" in bench("plugins", "--help").output


def test_package_lists_every_package_folder():
    """pyproject lists packages explicitly (docs/ and examples/ are mapped in): none may be forgotten."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    # import names are ser-bench's own (no generic top-level `harness` / `plugins` once installed);
    # the folders keep the layout harness/ and plugins/
    names = {"harness": "ser_bench", "plugins": "ser_bench_plugins"}
    found = {".".join((names[top], *p.parent.relative_to(REPO / top).parts)) for top in names
             for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert cfg["package-dir"] == {"ser_bench": "harness", "ser_bench_plugins": "plugins",
                                  "ser_bench._docs": "docs", "ser_bench._examples": "examples",
                                  "ser_bench._suites": "benchmarks"}
    assert not {p.split(".")[0] for p in listed} - {"ser_bench", "ser_bench_plugins"}


@pytest.mark.skipif(shutil.which("pip") is None and not (Path(sys.executable).parent / "pip").exists(),
                    reason="pip is needed to build the wheel")
def test_the_wheel_ships_docs_and_example(tmp_path):
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache")
    for name in ("harness", "plugins", "docs", "examples", "benchmarks"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "setup.py"):
        shutil.copy(REPO / name, src / name)
    # build isolation: pip takes setuptools>=68 from the index as `pip install` does (the environment's
    # own setuptools may be older)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist())
    assert "ser_bench/_docs/writing-a-plugin.md" in names
    assert "ser_bench/_examples/ser-bench-example/pyproject.toml" in names
    assert "ser_bench/_examples/ser-bench-example/src/ser_bench_example/gate.py" in names
    assert "ser_bench/testing/__init__.py" in names and "ser_bench/docs.py" in names
    assert "ser_bench_plugins/rescnn/__init__.py" in names
    assert not {n.split("/")[0] for n in names if "/" in n} - {"ser_bench", "ser_bench_plugins"} - {
        n.split("/")[0] for n in names if ".dist-info/" in n}  # no generic top-level import package
    # and `bench docs` finds them there (ser_bench/_docs first), without a source checkout
    site = tmp_path / "site"
    zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).extractall(site)
    code = ("import sys; from ser_bench.docs import docs_dir, example_dir; print(docs_dir()); print(example_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(site)}).stdout.split()
    assert out == [str(site / "ser_bench" / "_docs"), str(site / "ser_bench" / "_examples" / "ser-bench-example")]


# --------------------------------------------------------------------------- start-up


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "wiener"], ["docs"]])
def test_startup_imports_no_heavy_module(args):
    """`bench --help` / `bench plugins` stay fast: torch, scipy, opensmile, pandas... are not imported."""
    code = (
        "import json, sys\n"
        "from ser_bench.cli import cli\n"
        "try:\n    cli(json.loads(sys.argv[1]), prog_name='bench')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in json.loads(sys.argv[2]))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args), json.dumps(HEAVY)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
