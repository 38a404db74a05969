"""Every command README.md and the ``--help`` texts show must run as written.

Commands are extracted, not copied (a README line added tomorrow is tested tomorrow), with data
paths substituted: ``../shared/data`` -> the real corpora (commands needing them skip when they
are absent), repository files (``benchmarks/*.toml``) -> their path in this checkout, input
``*.wav`` -> a tiny generated file. The default suite parses every command and runs it cheaply
(``bench run`` with ``--dry-run`` added; ``bench runs show 1`` against a registry holding run 1;
``bench train`` up to its training loop); the slow tests run ``bench run`` for real on tiny synthetic data and ``bench train`` with a
two-step budget.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from ser_bench.cli import cli
from ser_bench.db import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

_spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme)

#: placeholders README uses for things a test cannot have: commands holding one are parsed and
#: dry-run (which touches neither a scheduler nor a database) but never run for real
NEEDS_A_SERVER = ("HOST", "user@host")
#: commands whose cheap form is too slow for the default suite (torch training, real corpora)
SLOW_COMMANDS = ("train", "eval-enhancer")


def _walk(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, prefix + (name,))


def help_examples() -> list[str]:
    """``bench ...`` lines of every command's help text (its Examples / Quick start)."""
    out = []
    for _, cmd in [((), cli), *_walk(cli)]:
        for line in (cmd.help or "").splitlines():
            line = readme._strip_comment(line).strip()
            if line.startswith("bench "):
                out.append(line)
    return list(dict.fromkeys(out))


def help_mentions() -> list[tuple[str, str]]:
    """(where, "bench WORD [WORD]") for every mention of a command in help texts and option helps."""
    out = []
    for path, cmd in [((), cli), *_walk(cli)]:
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        for text in texts:
            for m in re.finditer(r"(?<![\w-])bench ([a-z][\w-]*(?: [a-z][\w-]*)?)", text):
                out.append((" ".join(("bench",) + path) + " --help", "bench " + m.group(1)))
    return out


def resolve(args: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """(command path, command, its arguments) of ``bench ARGS``; fails naming a missing command."""
    cmd: click.Command = cli
    path: list[str] = []
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        sub = cmd.commands.get(args[0])
        if sub is None:
            raise AssertionError(f"`bench {' '.join(path + [args[0]])}`: no such command; "
                                 f"`bench {' '.join(path)} --help` lists {sorted(cmd.commands)}")
        path.append(args[0])
        cmd, args = sub, args[1:]
    return path, cmd, args


#: synthetic corpora README writes first (``python -m ser_bench_plugins.NAME DIR``): an argument
#: ``NAME=/tmp/NAME-fixture`` gets one written by that module's ``write_fixture``
FIXTURES = {"iemocap": "ser_bench_plugins.iemocap"}


def substitute(command: str, workdir: Path) -> list[str] | None:
    """``bench ...`` -> its arguments with paths made real; None when it needs absent corpora."""
    args = []
    for a in shlex.split(command)[1:]:
        fixture = re.fullmatch(r"([\w-]+)=/tmp/([\w.-]+-fixture)", a)
        if fixture and fixture[1] in FIXTURES:
            path = importlib.import_module(FIXTURES[fixture[1]]).write_fixture(workdir / fixture[2])
            a = f"{fixture[1]}={path}"
        elif "../shared/data" in a:
            if not SHARED_DATA.is_dir():
                return None
            a = a.replace("../shared/data", str(SHARED_DATA))
        elif "/" in a and not a.startswith(("-", "tcp:")) and "://" not in a and (ROOT / a).exists():
            a = str(ROOT / a)  # a file of the checkout (benchmarks/*.toml); the test runs elsewhere
        elif a.endswith(".wav") and not (workdir / a).exists():
            t = np.arange(4000) / 16000
            sf.write(str(workdir / a), (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)
        args.append(a)
    return args


def _seed_registry() -> None:
    """A registry holding run 1 (README shows `bench runs show 1`)."""
    store = Store()
    rid = store.start_run(config_json="{}", config_hash="h", protocol="clean", name=None, code_version="t",
                          plugins={}, env={}, seed=0, snr_definition="s", n_cells=1)
    store.record_cell(rid, "k", dict(dataset="d", ser_model="m", enhancer="none", noise="-", protocol="clean",
                                     train_condition="clean", train_snr=None, test_condition="clean",
                                     test_snr=None, fold="f"), status="done", metrics={"uar": 0.5})
    store.finish_run(rid, "done", wall_s=1.0)


def _invoke(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def _explain(command: str, args: list[str], r) -> str:
    import traceback

    tb = "".join(traceback.format_exception(r.exception)) if r.exception and not isinstance(r.exception, SystemExit) else ""
    return f"`{command}` (run as bench {shlex.join(args)}) exited {r.exit_code}:\n{r.output[-3000:]}\n{tb[-3000:]}"


COMMANDS = [("README.md", c) for c in readme.bench_commands()] + [("--help", c) for c in help_examples()]


def test_commands_were_found():
    assert len(readme.bench_commands()) >= 10 and any(c.startswith("bench train") for c in readme.bench_commands())
    assert "bench run mismatched" in help_examples()


@pytest.mark.parametrize("source,command", COMMANDS, ids=[f"{s}: {c}" for s, c in COMMANDS])
def test_command_runs_as_written(source, command, tmp_path, monkeypatch):
    args = substitute(command, tmp_path)
    if args is None:
        pytest.skip(f"needs the real corpora in {SHARED_DATA}")
    path, cmd, rest = resolve(list(args))
    with cmd.make_context(" ".join(["bench", *path]), list(rest)):  # options and arguments parse
        pass
    if path[0] == "train":  # everything up to the training loop (options, budget, corpora); the loop is slow
        from ser_bench.plugins import default_registry

        started = []
        monkeypatch.setattr(default_registry().get("enhancer", rest[0]), "train",
                            lambda self, utts, noise, **kw: started.append((len(utts), kw)) or {"steps": 0})
        r = _invoke(args)
        assert r.exit_code == 0 and started and started[0][0] > 0, _explain(command, args, r)
        return
    if path[0] in SLOW_COMMANDS:
        pytest.skip(f"bench {path[0]} runs in the slow test (test_slow_command_runs_as_written)")
    if path[0] in ("run", "paper") and "--dry-run" not in args:
        args = [*args, "--dry-run"]  # the cells it would compute; the slow test computes them
    _seed_registry()
    r = _invoke(args)
    assert r.exit_code == 0, _explain(command, args, r)


SLOW = [(s, c) for s, c in COMMANDS
        if shlex.split(c)[1] in SLOW_COMMANDS or (shlex.split(c)[1] == "run" and "--dry-run" not in c)]


@pytest.mark.slow
@pytest.mark.parametrize("source,command", SLOW, ids=[f"{s}: {c}" for s, c in SLOW])
def test_slow_command_runs_as_written(source, command, tmp_path):
    """``bench run`` computes for real (tiny synthetic corpus); ``bench train`` with its budget cut
    to two steps (a command without a budget fails, as it would for a user)."""
    args = substitute(command, tmp_path)
    if args is None:
        pytest.skip(f"needs the real corpora in {SHARED_DATA}")
    if any(p in command for p in NEEDS_A_SERVER):
        pytest.skip("needs a server README names by placeholder (its dry run is in the default suite)")
    path, _, _ = resolve(list(args))
    if path[0] == "run":
        if "--dataset" in args or "--suite" in args:
            pytest.skip("a full real-corpus run takes too long for a test (its dry run is in the default suite)")
        args = [*args, "-o", "synthetic.per_class=1", "-q"]
    elif path[0] == "train" and ("--minutes" in args or "--steps" in args):
        args = [*args, "--steps", "2", "--valid-every", "1", "-q"]  # whichever budget ends first
    r = _invoke(args)
    assert r.exit_code == 0, _explain(command, args, r)


@pytest.mark.parametrize("where,mention", help_mentions(), ids=[f"{w}: {m}" for w, m in help_mentions()])
def test_help_texts_name_real_commands(where, mention):
    words = mention.split()[1:]
    cmd = cli.commands.get(words[0])
    assert cmd is not None, f"{where} mentions `{mention}`, but there is no `bench {words[0]}`"
    if isinstance(cmd, click.Group) and len(words) > 1 and not words[1].startswith("-"):
        assert words[1] in cmd.commands, f"{where} mentions `{mention}`: `bench {words[0]}` has {sorted(cmd.commands)}"


def test_readme_marks_the_commands_ci_runs():
    assert readme.marked("install-and-run").startswith("pip install torch==2.13.0 && pip install -e . && bench run")
    assert readme.marked("test").endswith('python -m pytest -q -m "not slow"')
    extras = re.search(r"\.\[([a-z,_-]+)\]", readme.marked("optional-extras")).group(1).split(",")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert all(re.search(rf"^{x} = \[", pyproject, re.M) for x in extras)  # every extra exists
    ci = (ROOT / ".ci" / "run").read_text()
    for name in ("install-and-run", "test", "optional-extras"):
        assert f"readme {name}" in ci


def test_extraction_catches_what_went_wrong_before(tmp_path):
    """The two README/help mistakes of issue 11, as a new line would bring them."""
    text = ("    bench train rescnn --speech librispeech --speech-root ../shared/data/librispeech \\\n"
            "        --noise folder --noise-root ../shared/data/noise --out my.pt      # then -o x\n\n"
            "Pick one with `bench ls enhancers`.\n")
    cmds = readme.bench_commands(text)
    assert cmds[0].endswith("--out my.pt") and "# then" not in cmds[0]
    with pytest.raises(AssertionError, match="no such command"):
        resolve(shlex.split(cmds[1])[1:])
