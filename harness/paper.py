"""``bench paper``: every experiment of Triantafyllopoulos et al. (Interspeech 2019) that the data
at hand allows, with the paper's enhancer and the best one available, then the report.

The experiments are the paper suites in ``benchmarks/*.toml`` (one per corpus and protocol);
this module only picks those whose corpus was given (``--data-root NAME=PATH``), applies the
command's overrides (enhancers, SNRs, the quick preset, plugin options) and runs them one after
the other through :func:`ser_bench.runner.run` into one results database. eNTERFACE'05 is played
by RAVDESS when only RAVDESS is given. Experiments whose corpus is missing are listed as
skipped, with the ``--data-root`` that would enable them.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, load_suite, make_config, merge
from .errors import BenchError, ConfigError
from .suites import resolve_paths

#: the paper's enhancer (our reimplementation of its ResNet)
PAPER_ENHANCER = "rescnn"
#: "best available" enhancer: the first of these that is registered and loads
BEST_ENHANCERS = ("deepfilternet", "wiener")
#: --quick: SNRs (multi-SNR grid) and the end-to-end model's epoch cap
QUICK_SNRS = [0.0, 20.0]
QUICK_MULTI_SNRS = [5.0, 15.0]
QUICK_OPTIONS = {"e2e-arousal": {"epochs": 5}}


@dataclass(frozen=True)
class Experiment:
    dataset: str
    protocol: str
    suite: str  # file name in the suites folder
    tables: str  # the paper's tables it fills
    corpus: str  # the paper's corpus
    stand_in_for: str | None = None  # dataset this one replaces when that one is absent

    @property
    def name(self) -> str:
        return f"{self.dataset} {self.protocol}"


EXPERIMENTS = (
    Experiment("emodb", "matched", "emodb_matched.toml", "Table 2", "EMO-DB"),
    Experiment("emodb", "mismatched", "emodb_mismatched.toml", "Tables 3, 5", "EMO-DB"),
    Experiment("enterface", "matched", "enterface_matched.toml", "Table 2", "eNTERFACE"),
    Experiment("enterface", "mismatched", "enterface_mismatched.toml", "Tables 3, 5", "eNTERFACE"),
    Experiment("ravdess", "matched", "ravdess_matched.toml", "Table 2", "eNTERFACE", stand_in_for="enterface"),
    Experiment("ravdess", "mismatched", "ravdess_mismatched.toml", "Tables 3, 5", "eNTERFACE",
               stand_in_for="enterface"),
    Experiment("recola", "mismatched", "recola_mismatched.toml", "Tables 3, 4", "RECOLA"),
    Experiment("recola", "multi-snr", "recola_multisnr.toml", "Table 6", "RECOLA"),
)


@dataclass
class Planned:
    experiment: Experiment
    config: RunConfig
    suite_path: Path


@dataclass
class PaperPlan:
    planned: list[Planned]
    skipped: list[tuple[Experiment, str]]
    enhancers: list[str]
    best_enhancer: str | None


@dataclass
class PaperResult:
    runs: list[tuple[Experiment, Any]] = field(default_factory=list)  # (experiment, RunSummary)
    failed: list[tuple[Experiment, str]] = field(default_factory=list)
    wall_s: float = 0.0
    report: Path | None = None


def default_suites_dir() -> Path:
    """The shipped suites (``ser_bench/_suites`` installed, ``benchmarks/`` in a checkout)."""
    from .suites import suites_dir

    return suites_dir()


def best_enhancer(registry: Any) -> str:
    """deepfilternet when it is registered and loads, else wiener."""
    names = set(registry.names("enhancer"))
    for name in BEST_ENHANCERS:
        if name not in names:
            continue
        try:
            registry.create("enhancer", name, {})
        except Exception:  # not importable here (missing package or weights): the next one
            continue
        return name
    return "wiener"


def parse_data_roots(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for text in items:
        name, eq, path = text.partition("=")
        if not eq or not name or not path:
            raise ConfigError(f"--data-root {text!r}: expected DATASET=PATH, e.g. emodb=../shared/data/emodb")
        out[name] = path
    return out


def _with_known_names(registry: Any, datasets: Sequence[str]) -> None:
    known = {e.dataset for e in EXPERIMENTS}
    unknown = sorted(set(datasets) - known)
    if unknown:
        raise ConfigError(f"--data-root {unknown[0]}=...: the paper's experiments use "
                          f"{', '.join(sorted(known))}; {unknown[0]!r} is none of them")


def make_plan(data_roots: dict[str, str], *, registry: Any, snrs: Sequence[float] = (),
              enhancers: Sequence[str] = (), quick: bool = False, options: dict[str, dict[str, Any]] | None = None,
              suites_dir: str | Path | None = None, seed: int | None = None) -> PaperPlan:  # fmt: skip
    """The experiments to run (one RunConfig each) and those skipped, with why."""
    _with_known_names(registry, list(data_roots))
    suites = Path(suites_dir) if suites_dir else default_suites_dir()
    if not suites.is_dir():
        raise ConfigError(f"paper suites folder {suites} not found: pass --suites DIR (a folder holding "
                          f"{EXPERIMENTS[0].suite} and the other paper suites), or leave --suites out for the "
                          "shipped ones")
    best = None
    if enhancers:
        chosen = [e for e in enhancers if e != "none"]
    else:
        best = best_enhancer(registry)
        chosen = [PAPER_ENHANCER] + ([best] if best != PAPER_ENHANCER else [])
    registry.check("enhancer", chosen)
    planned: list[Planned] = []
    skipped: list[tuple[Experiment, str]] = []
    for exp in EXPERIMENTS:
        stand_ins = [e.dataset for e in EXPERIMENTS if e.stand_in_for == exp.dataset]
        if exp.stand_in_for:
            if exp.dataset in data_roots and exp.stand_in_for in data_roots:
                skipped.append((exp, f"not needed: {exp.stand_in_for} itself is given"))
            if exp.dataset not in data_roots or exp.stand_in_for in data_roots:
                continue
        elif exp.dataset not in data_roots:
            given = [d for d in stand_ins if d in data_roots]
            if given:
                why = f"{given[0]} stands in for it (pass --data-root {exp.dataset}=PATH for {exp.corpus} itself)"
            else:
                alt = f" (or {stand_ins[0]}=PATH to stand in for it)" if stand_ins else ""
                why = f"no {exp.corpus} corpus: pass --data-root {exp.dataset}=PATH{alt}"
            skipped.append((exp, why))
            continue
        path = suites / exp.suite
        base = resolve_paths(load_suite(path), path, registry)  # a suite's relative paths: from its folder
        over: dict[str, Any] = {"enhancers": ["none", *chosen]}
        multi = exp.protocol == "multi-snr"
        grid = [float(s) for s in base.get("train_snrs") or base.get("snrs") or []]
        want = [float(s) for s in snrs] if snrs else ((QUICK_MULTI_SNRS if multi else QUICK_SNRS) if quick else [])
        if want:
            if multi:  # the paper's grid is 5/10/15 dB; keep the asked SNRs inside it when there are any
                inside = [s for s in want if s in grid]
                want = inside or want
                over.update(snrs=want, train_snrs=want, test_snrs=want)
            else:
                over["snrs"] = want
        if seed is not None:
            over["seed"] = seed
        used = set(base.get("datasets", [])) | set(base.get("ser_models", [])) | set(over["enhancers"]) | set(
            base.get("noise_sources", []))
        # absolute, so that the report finds the corpus again from any folder (its notes, e.g. a degraded copy)
        root = str(Path(data_roots[exp.dataset]).expanduser().resolve())
        opts: dict[str, dict[str, Any]] = {exp.dataset: {"root": root}}
        for src in ((QUICK_OPTIONS if quick else {}), options or {}):
            for plugin, o in src.items():
                if plugin in used:
                    opts.setdefault(plugin, {}).update(o)
        over["options"] = opts
        _check_noise_root(merge(base, over), path)
        planned.append(Planned(exp, make_config(merge(base, over), source=str(path)), path))
    return PaperPlan(planned, skipped, chosen, best)


def _check_noise_root(data: dict[str, Any], path: Path) -> None:
    """The paper suites' noise folder is the development checkout's (../../shared/data/noise from the
    suite): elsewhere (an installed ser-bench) say how to give one, before any work starts."""
    if "folder" not in data.get("noise_sources", []):
        return
    root = (data.get("options") or {}).get("folder", {}).get("root")
    if root is not None and not Path(str(root)).expanduser().is_dir():
        raise ConfigError(f"noise folder {root} (from {path.name}) does not exist: pass --noise-root PATH, a folder "
                          "of noise clips (e.g. ESC-50 / UrbanSound8K without speech and music)")


def describe(plan: PaperPlan, registry: Any, echo: Callable[[str], None]) -> int:
    """``--dry-run``: every experiment with its cell count (lists each corpus; computes nothing)."""
    from .runner import plan as plan_cells

    total = 0
    src = f" (best available: {plan.best_enhancer})" if plan.best_enhancer else ""
    echo(f"enhancers: {', '.join(plan.enhancers)}{src}")
    for p in plan.planned:
        _, folds, cells = plan_cells(p.config, registry)
        total += len(cells)
        snrs = p.config.train_snrs or p.config.snrs
        echo(f"run   {p.experiment.name:<22} {p.experiment.tables:<12} {len(cells):>6} cells  "
             f"{', '.join(p.config.ser_models)}; SNRs {', '.join(f'{s:g}' for s in snrs)} dB; "
             f"{sum(len(f) for f in folds.values())} folds  [{p.suite_path.name}]")
    for exp, why in plan.skipped:
        echo(f"skip  {exp.name:<22} {exp.tables:<12} {why}")
    echo(f"{total} cells in {len(plan.planned)} experiments; {len(plan.skipped)} skipped")
    return total


def run_paper(plan: PaperPlan, *, store: Any, out: str | Path, executor: str = "process", jobs: int | None = None,
              cache_dir: str | None = None, progress: bool = False,
              echo: Callable[[str], None] = print) -> PaperResult:  # fmt: skip
    """Run every planned experiment (each resumes what is stored), then write the report."""
    from .report.build import build_report
    from .runner import run as run_protocol

    res = PaperResult()
    t0 = time.perf_counter()
    for p in plan.planned:
        echo(f"== {p.experiment.name} ({p.experiment.tables}): {p.suite_path.name}")
        try:
            s = run_protocol(p.config, store=store, executor=executor, jobs=jobs, cache_dir=cache_dir,
                             progress=progress, echo=echo)
        except BenchError as exc:  # a broken experiment does not stop the others
            res.failed.append((p.experiment, str(exc)))
            echo(f"   failed: {exc}")
            continue
        res.runs.append((p.experiment, s))
        echo(f"   run {s.run_id}: {s.n_done} computed, {s.n_skipped} already stored, {s.n_failed} failed, "
             f"{s.wall_s:.1f} s")
        if s.n_failed:
            res.failed.append((p.experiment, f"{s.n_failed} cell(s) failed (bench runs show {s.run_id})"))
    for exp, why in plan.skipped:
        echo(f"skipped {exp.name}: {why}")
    res.report = build_report(store, Path(out))
    res.wall_s = time.perf_counter() - t0
    return res
