"""examples/ser-bench-example, proven from the outside: pip-install it, list it, run it, remove it.

The package is pip-installed (a real wheel build, entry point and all) into a throw-away virtual
environment layered on this one (a ``.pth`` file puts the current ``sys.path`` behind the venv's
own site-packages), so the shared environment is never modified, even when a test fails
half-way. ``bench`` runs in that environment as a subprocess, exactly as a user would run it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ser-bench-example"
DIST, VERSION = "ser-bench-example", "0.1.0"
BENCH = "import sys; from ser_bench.cli import cli; sys.argv[0] = 'bench'; cli()"

#: In one process (each `bench` start costs seconds): `bench plugins`, then `bench plugins --json`
#: once per BENCH_LOAD_PLUGINS value (None: unset), `bench run --dry-run` with the example left
#: out, and where the example package is imported from.
PROBE = """
import json, sys
from click.testing import CliRunner
from ser_bench.cli import cli
from ser_bench.plugins import default_registry
out = {"plugins": {}}
res = CliRunner().invoke(cli, ["plugins"], env={"BENCH_LOAD_PLUGINS": None}, catch_exceptions=False)
out["text"] = [res.exit_code, res.output]
for value in json.loads(sys.argv[1]):
    default_registry.cache_clear()
    res = CliRunner().invoke(cli, ["plugins", "--json"], env={"BENCH_LOAD_PLUGINS": value}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out["plugins"][str(value)] = sorted((r["kind"], r["name"], r["distribution"], r["version"]) for r in json.loads(res.output))
default_registry.cache_clear()
res = CliRunner().invoke(cli, ["run", "mismatched", "--dataset", "example-tones", "--dry-run"], env={"BENCH_LOAD_PLUGINS": ""})
out["dry_run_left_out"] = [res.exit_code, res.output]
import ser_bench_example
out["module"] = ser_bench_example.__file__
print(json.dumps(out))
"""


@dataclass
class Env:
    python: Path
    root: Path
    src: Path

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        """Run the venv's python with ``args`` in the repo, with a clean BENCH_* environment."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
        e.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", **env)
        proc = subprocess.run([str(self.python), *args], cwd=REPO, env=e, capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args[:3])}... exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def bench(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("-c", BENCH, *args, **kw)

    def pip(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("-m", "pip", "--disable-pip-version-check", "--no-input", *args)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    for mod in ("pip", "setuptools"):  # find, don't import: setuptools patches distutils on import
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is needed to build and install the example package")
    root = tmp_path_factory.mktemp("example-package")
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(root / "venv")
    python = root / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The venv sees this environment's packages (numpy, pluggy, pip, setuptools...) after its own.
    outer = [p for p in sys.path if p and Path(p).is_dir() and Path(p).resolve() != REPO]
    outer.append(sysconfig.get_paths()["purelib"])
    # ... and its .pth hooks too (an editable ser-bench maps its import names onto harness/ and plugins/)
    hook = f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})"
    (site / "_outer_environment.pth").write_text("\n".join([*dict.fromkeys(outer), hook]) + "\n")
    # Build from a copy, so that no build/ or *.egg-info lands in the repository.
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    e = Env(python, root, src)
    e.pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(src))
    return e


ALLOW_LISTS = [None, "", "example", DIST, "ser_bench_example", "some-other-plugin"]


@pytest.fixture(scope="module")
def probe(env) -> dict:
    return json.loads(env.run("-c", PROBE, json.dumps(ALLOW_LISTS)).stdout)


def test_installed_package_is_listed_with_its_version(probe):
    code, text = probe["text"]
    assert code == 0, text
    lines = [ln.split() for ln in text.splitlines()]
    assert ["enhancer", "example-gate", DIST, VERSION] in [ln[:4] for ln in lines]
    assert ["dataset", "example-tones", DIST, VERSION] in [ln[:4] for ln in lines]
    assert ["enhancer", "none", "ser-bench"] in [ln[:3] for ln in lines]  # built-ins still there


def test_allow_list_leaves_it_out(env, probe):
    out = probe
    listed = {k: {(name, ver) for _, name, dist, ver in rows if dist == DIST} for k, rows in out["plugins"].items()}
    both = {("example-gate", VERSION), ("example-tones", VERSION)}
    assert listed == {"None": both, "": set(), "example": both, DIST: both, "ser_bench_example": both,
                      "some-other-plugin": set()}
    assert len(out["plugins"][""]) == len(out["plugins"]["None"]) - 2  # only the example's two entries go
    # Left out, its names are unknown to `bench run`, with the usual message.
    code, text = out["dry_run_left_out"]
    assert code != 0 and "unknown dataset 'example-tones'" in text
    # The package's code comes from the venv's site-packages, not from the repository.
    assert out["module"].startswith(str(env.root / "venv"))


def test_example_runs_a_protocol(env, tmp_path):
    db = tmp_path / "results.db"
    res = env.bench(
        "run", "mismatched", "--dataset", "example-tones", "--enhancer", "example-gate", "--snr", "10",
        "-o", "example-tones.n_speakers=3", "-o", "example-tones.per_class=2", "-o", "example-tones.duration_s=0.5",
        "-o", "example-gate.threshold_db=8",
        "--db", f"sqlite:///{db}", "--cache", str(tmp_path / "cache"), "--executor", "inline", "-q",
    )
    assert "0 failed" in res.stderr, res.stdout + res.stderr  # -q: messages on stderr, the results table on stdout
    assert "example-tones · mismatched" in res.stdout and "example-gate" in res.stdout

    from ser_bench.db import Store

    store = Store(f"sqlite:///{db}")
    run = store.runs_frame().iloc[-1]
    assert run.status == "done"
    plugins = json.loads(run.plugins_json)
    assert plugins["enhancer:example-gate"] == plugins["dataset:example-tones"] == f"{DIST} {VERSION}"
    assert json.loads(run.config_json)["options"]["example-gate"] == {"threshold_db": 8}
    df = store.results_frame()
    uar = df[df.metric == "uar"]
    assert set(uar.dataset) == {"example-tones"}
    enhanced = uar[uar.test_condition == "enhanced"]
    assert set(enhanced.enhancer) == {"example-gate"} and set(enhanced.test_snr) == {10.0}
    assert sorted(enhanced.fold) == ["spk:spk0", "spk:spk1", "spk:spk2"]  # leave-one-speaker-out
    assert set(uar.test_condition) == {"clean", "noisy", "enhanced"}
    assert uar.value.between(0.0, 1.0).all() and len(uar) == 9  # 3 conditions x 3 folds


def test_example_package_own_tests_pass(env):
    """The package's own tests (ser_bench.testing conformance checks) pass against the installed copy."""
    res = env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(env.src / "tests"), check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 passed" in res.stdout


def test_uninstalling_removes_it(env):
    """Last in this module: it uninstalls the package from the throw-away environment."""
    env.pip("uninstall", "-y", DIST)
    res = env.bench("plugins")
    assert "example-gate" not in res.stdout and "example-tones" not in res.stdout
    assert "svm-egemaps" in res.stdout
