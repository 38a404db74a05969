import importlib.metadata as md
import types

import pytest

from ser_bench import Enhancer, hookimpl
from ser_bench.errors import PluginError, UnknownPluginError
from ser_bench.plugins import build_registry, make_plugin_manager


def test_builtins_registered():
    reg = build_registry(make_plugin_manager(entry_points=False))
    assert {"none", "wiener"} <= set(reg.names("enhancer"))
    assert {"svm-egemaps", "svm-compare"} <= set(reg.names("ser_model"))
    assert "synthetic" in reg.names("dataset") and "synthetic-noise" in reg.names("noise_source")
    e = reg.entry("enhancer", "wiener")
    assert e.dist == "ser-bench" and e.plugin == "ser_bench_plugins.classic"


def test_unknown_name_suggests(registry):
    with pytest.raises(UnknownPluginError, match=r"unknown enhancer 'weiner'\. Did you mean 'wiener'"):
        registry.get("enhancer", "weiner")


def test_duplicate_names_are_errors():
    class Dup:
        @hookimpl
        def register_enhancers(self, register):
            register("wiener", Enhancer)

    with pytest.raises(PluginError, match="duplicate enhancer name 'wiener'"):
        build_registry(make_plugin_manager(entry_points=False, extra=[Dup()]))


def test_lazy_target_import_failure_is_clear():
    class Broken:
        @hookimpl
        def register_enhancers(self, register):
            register("ghost", "no_such_module_xyz:Ghost")

    reg = build_registry(make_plugin_manager(entry_points=False, extra=[Broken()]))
    assert "ghost" in reg.names("enhancer")  # listing does not import it
    with pytest.raises(PluginError, match="ghost.*failed to import 'no_such_module_xyz:Ghost'"):
        reg.get("enhancer", "ghost")


def test_wrong_base_class_is_rejected():
    class Wrong:
        @hookimpl
        def register_enhancers(self, register):
            register("notanenhancer", dict)

    reg = build_registry(make_plugin_manager(entry_points=False, extra=[Wrong()]))
    with pytest.raises(PluginError, match="not a subclass of ser_bench.Enhancer"):
        reg.get("enhancer", "notanenhancer")


def test_misspelled_hook_fails_check_pending():
    class Typo:
        @hookimpl
        def register_enhancer(self, register):  # missing "s"
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        make_plugin_manager(entry_points=False, extra=[Typo()])


class _FakeDist:
    def __init__(self, name, version, eps):
        self.metadata = {"name": name}
        self.version = version
        self.entry_points = eps


def _fake_plugin_module():
    mod = types.ModuleType("fake_thirdparty")

    class Echo(Enhancer):
        name = "echo3p"

        def enhance_signal(self, x):
            return x

    @hookimpl
    def register_enhancers(register):
        register("echo3p", Echo)

    mod.register_enhancers = register_enhancers
    return mod


def _patch_dists(monkeypatch, load):
    ep = types.SimpleNamespace(group="ser_bench", name="fake3p", value="fake_thirdparty", load=load)
    monkeypatch.setattr(md, "distributions", lambda: [_FakeDist("ser-bench-fake", "9.9", [ep])])


def test_entry_point_plugins_load_with_version_and_allow_list(monkeypatch):
    mod = _fake_plugin_module()
    _patch_dists(monkeypatch, lambda: mod)
    reg = build_registry(make_plugin_manager())
    e = reg.entry("enhancer", "echo3p")
    assert (e.dist, e.dist_version) == ("ser-bench-fake", "9.9")
    monkeypatch.setenv("BENCH_LOAD_PLUGINS", "")
    assert "echo3p" not in build_registry(make_plugin_manager()).names("enhancer")
    monkeypatch.setenv("BENCH_LOAD_PLUGINS", "ser-bench-fake")
    assert "echo3p" in build_registry(make_plugin_manager()).names("enhancer")


def test_entry_point_import_failure_names_the_plugin(monkeypatch):
    def boom():
        raise ImportError("missing dependency foo")

    _patch_dists(monkeypatch, boom)
    with pytest.raises(PluginError, match="fake3p.*ser-bench-fake 9.9.*missing dependency foo.*BENCH_LOAD_PLUGINS"):
        make_plugin_manager()


def test_plugin_options_validated_by_pydantic(registry):
    from ser_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="gain_floor_db.*Allowed options"):
        build_registry(make_plugin_manager(entry_points=False)).create("enhancer", "wiener", {"gain_floor_db": 5})
    with pytest.raises(ConfigError, match="bogus"):
        build_registry(make_plugin_manager(entry_points=False)).create("enhancer", "wiener", {"bogus": 1})
