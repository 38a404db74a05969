"""The plugin kit (ser_bench.testing, the registry's checks) and its docs agree with each other."""
from __future__ import annotations

import ast
import json
import re
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ser_bench import Enhancer, PluginError, hookimpl
from ser_bench.plugins import build_registry, make_plugin_manager
from ser_bench.testing import RULES, ConformanceError, check_enhancer, check_hooks

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "writing-a-plugin.md"


class Gate(Enhancer):
    name = "kit-gate"
    description = "halves the signal"

    def enhance_signal(self, noisy: np.ndarray) -> np.ndarray:
        return noisy * 0.5


def plugin_module(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    return mod


@pytest.fixture
def lazy_module(tmp_path, monkeypatch):
    """Writes an importable module ``NAME.py`` with ``source`` and returns its name."""

    def make(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return make


GATE_SOURCE = """
    from ser_bench import Enhancer

    class LazyGate(Enhancer):
        name = "{name}"
        version = "7"
        description = {description}

        def enhance_signal(self, noisy):
            return noisy.copy()
"""


# --------------------------------------------------------------------------- check_hooks


def test_check_hooks_accepts_a_description(lazy_module):
    mod_name = lazy_module("kit_lazy_described", GATE_SOURCE.format(name="kit-lazy", description="''.join(['x'])"))
    mod = plugin_module("kit_described", register_enhancers=lambda register: register(
        "kit-lazy", f"{mod_name}:LazyGate", description="a gate, described at registration"))
    found = check_hooks(mod)
    assert list(found) == [("enhancer", "kit-lazy")] and found[("enhancer", "kit-lazy")].__name__ == "LazyGate"


def test_check_hooks_wants_lazy_targets_described(lazy_module):
    # the class's description is computed, so `bench plugins` could only read it by importing the module
    mod_name = lazy_module("kit_lazy_undescribed", GATE_SOURCE.format(name="kit-lazy", description="''.join(['x'])"))
    mod = plugin_module("kit_undescribed", register_enhancers=lambda register: register("kit-lazy", f"{mod_name}:LazyGate"))
    with pytest.raises(ConformanceError, match=r"describes lazy targets.*description=") as err:
        check_hooks(mod)
    assert err.value.rule == "describes lazy targets"
    # a literal description in the class body is read from the source: that is enough
    mod_name = lazy_module("kit_lazy_literal", GATE_SOURCE.format(name="kit-lazy", description="'a literal line'"))
    mod = plugin_module("kit_literal", register_enhancers=lambda register: register("kit-lazy", f"{mod_name}:LazyGate"))
    assert ("enhancer", "kit-lazy") in check_hooks(mod)


def test_check_hooks_catches_a_clash_with_an_installed_plugin():
    class Wiener(Enhancer):
        name = "wiener"
        description = "my own Wiener filter"

        def enhance_signal(self, noisy):
            return noisy.copy()

    mod = plugin_module("kit_clash", register_enhancers=lambda register: register("wiener", Wiener))
    with pytest.raises(ConformanceError, match=r"does not clash with installed plugins.*'wiener'.*plugins\.classic \(ser-bench\)"):
        check_hooks(mod)
    assert check_hooks(mod, installed=False) == {("enhancer", "wiener"): Wiener}
    # and what the kit predicts is what happens: bench refuses the duplicate
    with pytest.raises(PluginError, match="duplicate enhancer name 'wiener'"):
        build_registry(make_plugin_manager(entry_points=False, extra=[mod]))


def test_check_hooks_catches_a_name_different_from_the_class_name(lazy_module):
    mod = plugin_module("kit_renamed", register_enhancers=lambda register: register("other-gate", Gate))
    with pytest.raises(ConformanceError, match=r"registers names matching the classes.*'other-gate'.*'kit-gate'"):
        check_hooks(mod)
    mod_name = lazy_module("kit_lazy_renamed", GATE_SOURCE.format(name="inner-name", description="'d'"))
    mod = plugin_module("kit_lazy_renamed_hooks", register_enhancers=lambda register: register(
        "outer-name", f"{mod_name}:LazyGate"))
    with pytest.raises(ConformanceError, match="registers names matching the classes"):
        check_hooks(mod)


# --------------------------------------------------------------------------- registry and `bench plugins`


def test_registry_and_bench_plugins_refuse_a_renamed_class(lazy_module, monkeypatch):
    mod_name = lazy_module("kit_lazy_mismatch", GATE_SOURCE.format(name="inner-name", description="'d'"))
    mod = plugin_module("kit_mismatch", register_enhancers=lambda register: (
        register("other-gate", Gate), register("outer-name", f"{mod_name}:LazyGate", description="lazy")))
    reg = build_registry(make_plugin_manager(entry_points=False, extra=[mod]))
    with pytest.raises(PluginError, match=r"'other-gate'.*whose name is 'kit-gate'.*Register it as 'kit-gate'"):
        reg.get("enhancer", "other-gate")
    # seen without importing the lazy module
    assert "whose name is 'inner-name'" in reg.entry("enhancer", "outer-name").problem()
    assert mod_name not in sys.modules
    with pytest.raises(PluginError, match="whose name is 'inner-name'"):
        reg.get("enhancer", "outer-name")

    from ser_bench.cli import cli

    monkeypatch.setattr("ser_bench.plugins.default_registry", lambda: reg)
    res = CliRunner().invoke(cli, ["plugins"])
    assert res.exit_code == 1
    rows = {ln.split()[1]: ln for ln in res.output.splitlines() if ln.startswith("enhancer")}
    assert "BROKEN:" in rows["other-gate"] and "BROKEN:" in rows["outer-name"] and "BROKEN" not in rows["wiener"]
    assert "2 plugin(s) broken" in res.output


def test_bench_plugins_shows_the_class_version():
    from ser_bench.cli import cli

    res = CliRunner().invoke(cli, ["plugins"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = [ln.split() for ln in res.output.splitlines()]
    assert lines[0][:5] == ["KIND", "NAME", "DISTRIBUTION", "VERSION", "CLASS-VERSION"]
    from ser_bench_plugins.synthetic import SyntheticEmotion

    assert ["dataset", "synthetic", "ser-bench", "0.1.0", SyntheticEmotion.version] in [ln[:5] for ln in lines]
    rows = json.loads(CliRunner().invoke(cli, ["plugins", "--json"], catch_exceptions=False).output)
    from ser_bench.plugins import default_registry

    want = {(e.kind, e.name): e.resolve().version for e in default_registry().entries()}
    assert {(r["kind"], r["name"]): r["class_version"] for r in rows} == want


# --------------------------------------------------------------------------- the docs say what the code does


def _doc_rules() -> dict[str, set[str]]:
    """Rule names quoted in the guide's rules table, by check ("all" for the first row)."""
    text = GUIDE.read_text()
    table = text[text.index("| check | rules |"):]
    out: dict[str, set[str]] = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        check_cell, rules_cell = line.strip("|").split("|", 1)
        key = m.group(1) if (m := re.search(r"`(check_\w+)`", check_cell)) else "all"
        # rule names are the backticked items outside parentheses
        outside = re.sub(r"\s\([^()]*\)", "", rules_cell)
        out[key] = set(re.findall(r"`([^`]+)`", outside))
    return out


def test_every_rule_name_in_the_docs_is_the_kits():
    assert _doc_rules() == {k: set(v) for k, v in RULES.items()}


def test_every_rule_the_kit_raises_is_listed():
    """Each literal rule name passed to ConformanceError (or a helper taking one) is in RULES."""
    known = {r for rules in RULES.values() for r in rules}
    used: set[str] = set()
    positions = {"ConformanceError": 1, "_call": 1, "_enhance_checked": 2}
    for path in (REPO / "harness" / "testing").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in positions:
                arg = node.args[positions[node.func.id]] if len(node.args) > positions[node.func.id] else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    used.add(arg.value)
            if (isinstance(node, ast.Tuple) and len(node.elts) == 3 and isinstance(node.elts[0], ast.Constant)
                    and not isinstance(node.elts[2], ast.Constant)):
                used.add(node.elts[0].value)  # the (rule, description, signal) cases of check_enhancer
    used = {u for u in used if isinstance(u, str)}
    assert {"keeps length", "handles silence", "registers names matching the classes"} <= used
    assert used - known == set()
    with pytest.raises(ValueError, match="unknown conformance rule"):
        ConformanceError("x", "finite float output", "no such rule")


def _shortening(module: str, name: str, cls_name: str) -> str:
    def enhance_signal(self, noisy):
        return noisy[:-1].copy()

    cls = type(cls_name, (Enhancer,), {"name": name, "description": "d", "enhance_signal": enhance_signal,
                                       "__module__": module})
    with pytest.raises(ConformanceError) as err:
        check_enhancer(cls)
    return str(err.value)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def test_the_example_failures_in_the_docs_are_real():
    guide = GUIDE.read_text()
    example = guide[guide.index("An example failure:"):].split("\n\n")[1]
    assert _normalise(example) == _shortening("ser_bench_mygate.gate", "mygate", "MyGate")
    import ser_bench.testing

    doc = ser_bench.testing.__doc__
    example = doc[doc.index("rule it breaks"):].split("::\n\n")[1].split("\n\n")[0]
    assert _normalise(example) == _shortening("mypkg", "shortener", "Shortener")


def test_the_guide_says_what_an_offline_plugin_install_needs():
    guide = GUIDE.read_text()
    toml = guide[guide.index("```toml"):]
    toml = toml[: toml.index("```", 3)]
    assert "[build-system]" in toml and "[project.entry-points.ser_bench]" in toml
    assert "--no-build-isolation" in guide
    assert "from ser_bench.testing import ConformanceError" in guide
    assert 'description="' in guide[guide.index("## 2. Hooks"):guide.index("## 3.")]
    assert "bench plugins mygate" in guide


def test_testing_is_a_readable_package():
    import ser_bench.testing as kit

    assert Path(kit.__file__).name == "__init__.py"
    sizes = {p.name: len(p.read_text().splitlines()) for p in Path(kit.__file__).parent.glob("*.py")}
    assert {"enhancers.py", "ser_models.py", "datasets.py", "noise_sources.py", "hooks.py", "fakes.py"} <= set(sizes)
    assert max(sizes.values()) < 400, sizes
    for name in kit.__all__:  # the public API is re-exported
        assert getattr(kit, name) is not None
