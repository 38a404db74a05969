"""static_attributes reads name / version / description of a lazy plugin without importing it,
following base classes in the same module and in other modules (``from .base import Base``)."""
from __future__ import annotations

import sys
import textwrap

import pytest

from ser_bench.plugininfo import static_attributes


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    root = tmp_path / "staticpkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "base.py").write_text(textwrap.dedent('''
        raise RuntimeError("importing base.py is what static_attributes must avoid")
        class Base:
            version = "7"
            description = "from the base"
    '''))
    (root / "sub" / "model.py").write_text(textwrap.dedent('''
        raise RuntimeError("importing model.py is what static_attributes must avoid")
        from ..base import Base as Renamed
        class Local(Renamed):
            name = "local"
        class Model(Local):
            name = "model"
            description = "own description"
        class Computed(Renamed):
            name = "computed"
            version = str(1 + 1)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "staticpkg"
    for m in [m for m in sys.modules if m.startswith("staticpkg")]:
        del sys.modules[m]


def test_follows_bases_across_modules_without_importing(pkg):
    got = static_attributes(f"{pkg}.sub.model:Model")
    assert got == {"name": "model", "version": "7", "description": "own description"}
    assert f"{pkg}.sub.model" not in sys.modules and f"{pkg}.base" not in sys.modules


def test_non_literal_attribute_is_unknown_not_inherited(pkg):
    got = static_attributes(f"{pkg}.sub.model:Computed")
    assert got["name"] == "computed" and "version" not in got  # str(1 + 1) is not a literal
    assert got["description"] == "from the base"


def test_missing_class_or_module(pkg):
    assert static_attributes(f"{pkg}.sub.model:Nope") is None
    assert static_attributes("staticpkg_absent.mod:X") is None


def test_e2e_models_version_read_statically():
    """The e2e models inherit version from _E2EBase in a sibling module (the split that broke CI)."""
    got = static_attributes("ser_bench_plugins.e2e.model:E2EArousalModel", use_imported=False)
    assert got["name"] == "e2e-arousal" and got["version"] == "1"
