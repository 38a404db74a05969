"""Run configuration: defaults < suite TOML < flags the user typed."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .interfaces import stable_hash

PROTOCOLS = ("clean", "matched", "mismatched", "multi-snr", "multi-condition")
DEFAULT_SNRS = [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0]


class RunConfig(BaseModel):
    """Everything that determines a run's results (and therefore its ``config_hash``).

    ``options`` maps a plugin name to that plugin's options, e.g.
    ``{"emodb": {"root": "../shared/data/emodb"}, "rescnn": {"checkpoint": "ck.pt"}}``;
    each plugin validates its own entry.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["clean", "matched", "mismatched", "multi-snr", "multi-condition"]
    datasets: list[str] = Field(default_factory=lambda: ["synthetic"], min_length=1)
    ser_models: list[str] = Field(default_factory=lambda: ["svm-egemaps"], min_length=1)
    enhancers: list[str] = Field(default_factory=lambda: ["none", "wiener"], min_length=1)
    noise_sources: list[str] = Field(default_factory=lambda: ["synthetic-noise"], min_length=1)
    #: additive-noise conditions: every noise source at every SNR (may be empty when the run
    #: has ``corruptions``)
    snrs: list[float] = Field(default_factory=lambda: list(DEFAULT_SNRS))
    train_snrs: list[float] | None = None  # multi-snr only; default: snrs
    test_snrs: list[float] | None = None  # multi-snr only; default: snrs
    #: other test conditions: corruption chains, e.g. ``"reverb(rt60=0.6)"``,
    #: ``"babble(snr=0,talkers=5)"``, ``"reverb(rt60=0.6)+noise(snr=5)"`` (ser_bench.corruptions);
    #: a ``noise`` step without ``source`` uses the first of ``noise_sources``
    corruptions: list[str] = Field(default_factory=list)
    cv: Literal["auto", "loso", "partition", "group-kfold", "dataset", "emobox"] = "auto"
    #: folds of ``cv = "group-kfold"`` (whole speakers per fold, balanced by label)
    cv_folds: int = Field(5, ge=2)
    seed: int = 0
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    name: str | None = None  # a label for the suite; not part of the hash
    #: also measure enhancement quality and emotion preservation (PESQ, STOI, SI-SDR, prosody
    #: fidelity) of every noisy / enhanced condition (ser_bench.quality_runner); off: fast runs
    quality: bool = False
    #: a bad utterance (missing, corrupt, empty or truncated file, NaN/inf samples, silent
    #: speech): "fail" stops the run before any cell, listing every bad file and the fix;
    #: "skip" leaves it out of every fold and records it per utterance in the registry
    #: (table utterance_notes; `bench runs show`)
    on_bad_audio: Literal["fail", "skip"] = "fail"
    #: which audio the artefact cache keeps (features, fitted models and predictions always are):
    #: "none" (default: mixtures and enhanced signals are remade when a missing feature needs
    #: them; a warm rerun reads features only), "enhanced" (enhanced signals as 16-bit FLAC: a new
    #: SER model or the quality stage need not rerun the enhancers), "all" (mixtures too). Not
    #: part of the config hash: it changes what is kept, never a result.
    keep_audio: Literal["none", "enhanced", "all"] = "none"

    @field_validator("snrs", "train_snrs", "test_snrs")
    @classmethod
    def _snr_range(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        for s in v:
            if not -30 <= s <= 60:
                raise ValueError(f"SNR {s} dB is outside [-30, 60]")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate SNRs in {v}")
        return [float(s) for s in v]

    @field_validator("corruptions")
    @classmethod
    def _chains(cls, v: list[str]) -> list[str]:
        from .corruptions import parse_chain

        for text in v:
            parse_chain(text)  # a ConfigError (a ValueError) names the bad step
        return v

    @model_validator(mode="after")
    def _some_condition(self) -> RunConfig:
        if not self.snrs and not self.corruptions:
            raise ValueError("snrs is empty and there are no corruptions: give at least one SNR or one corruption")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> RunConfig:
        for field in ("datasets", "ser_models", "enhancers", "noise_sources"):
            names = getattr(self, field)
            if len(set(names)) != len(names):
                raise ValueError(f"{field} lists a name twice: {names}")
        return self

    def config_hash(self) -> str:
        data = self.model_dump(mode="json", exclude={"name", "keep_audio"})
        if not data.get("quality"):
            data.pop("quality", None)  # hashes of runs without the quality stage stay as they were
        if data.get("cv") != "group-kfold":
            data.pop("cv_folds", None)  # only group-kfold uses it; other runs keep their hashes
        if not data.get("corruptions"):
            data.pop("corruptions", None)  # runs without corruptions keep their hashes
        if data.get("on_bad_audio") == "fail":
            data.pop("on_bad_audio", None)  # likewise for runs under the default bad-audio policy
        return stable_hash(data)

    def plugin_options(self, name: str) -> dict[str, Any]:
        return dict(self.options.get(name, {}))

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def _explain(exc: ValidationError, source: str) -> ConfigError:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
    return ConfigError(f"invalid configuration in {source}: {problems}")


def make_config(data: dict[str, Any], source: str = "options") -> RunConfig:
    try:
        return RunConfig(**data)
    except ValidationError as exc:
        raise _explain(exc, source) from None


def load_suite(path: str | Path) -> dict[str, Any]:
    """Read a suite TOML file into a dict of RunConfig fields (validated later, merged with flags).

    A suite holds RunConfig fields at the top level (``protocol = "mismatched"``,
    ``datasets = ["emodb"]``...) and plugin options as tables: ``[options.emodb] root = "..."``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file {path} not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"suite file {path} is not valid TOML: {exc}") from None
    return data


def validate_suite(path: str | Path) -> RunConfig:
    """Load and validate a suite file (``bench validate``)."""
    data = load_suite(path)
    data.setdefault("protocol", "mismatched")
    return make_config(data, source=str(path))


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Overlay ``overrides`` on ``base``; ``options`` merge per plugin."""
    out = dict(base)
    for k, v in overrides.items():
        if k == "options":
            opts = {p: dict(o) for p, o in out.get("options", {}).items()}
            for p, o in v.items():
                opts.setdefault(p, {}).update(o)
            out["options"] = opts
        else:
            out[k] = v
    return out


def parse_option(text: str) -> tuple[str, str, Any]:
    """Parse ``plugin.key=value`` (value as JSON if it parses, else a string)."""
    key, eq, raw = text.partition("=")
    plugin, dot, opt = key.partition(".")
    if not eq or not dot or not plugin or not opt:
        raise ConfigError(f"option {text!r} must look like PLUGIN.KEY=VALUE, e.g. wiener.gain_floor_db=-20")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return plugin, opt, value
