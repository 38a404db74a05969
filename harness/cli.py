"""The ``bench`` command line: parse -> RunConfig -> runner -> store. Thin on purpose."""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

import click

from . import __version__
from .errors import BenchError
from .progress import switch as progress_switch

DB_HELP = "Results database: a file path or SQLAlchemy URL (env BENCH_DB; default ./registry.db)."


def db_option(f):  # noqa: ANN001, ANN201
    return click.option("--db", envvar="BENCH_DB", default=None, help=DB_HELP)(f)


class BenchGroup(click.Group):
    """Turns BenchError into a one-line message with the fix, instead of a traceback."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=BenchGroup)
@click.version_option(__version__, prog_name="ser-bench")
def cli() -> None:
    """ser-bench: does speech enhancement help or hurt emotion recognition in noise?

    \b
    Quick start (embedded synthetic data, no download):
      bench run mismatched        # clean / noisy / enhanced UAR at -5..20 dB
      bench report                # -> reports/index.html

    \b
    Datasets, noise sources, enhancers and SER models are plugins: `bench plugins`
    lists their names; set their options with -o PLUGIN.KEY=VALUE (a wrong key is
    an error listing the valid ones); `bench plugins NAME` lists a plugin's options.
    Third-party plugins are pip packages (ser-bench-<name>, entry-point group
    ser_bench); BENCH_LOAD_PLUGINS=a,b limits which load. Writing one: `bench docs
    plugin` (the guide) and `bench docs example` (a complete example package).
    """


def _without_unused_suite_options(base: dict, over: dict, cli_opts: dict) -> dict:
    """A suite's options for plugins that flags took out of the run (``--enhancer`` replacing its
    list, say) are dropped, with a note on stderr: the suite is a base the flags override. Options
    given with ``-o`` for a plugin the run does not use stay an error (a typo, most often)."""
    if not base.get("options"):
        return base
    from . import corruptions
    from .config import make_config, merge

    probe = make_config(merge({**base, "options": {}}, {**over, "options": {}}))
    used = set(probe.datasets + probe.ser_models + probe.enhancers + probe.noise_sources + corruptions.names(probe))
    listed = {n for k in ("datasets", "ser_models", "enhancers", "noise_sources") for n in base.get(k) or []}
    listed |= set(corruptions.names(make_config({**base, "options": {}}))) if base.get("corruptions") else set()
    # only plugins the suite itself lists: an option for a plugin it never names stays an error
    drop = sorted(p for p in base["options"] if p in listed and p not in used and p not in cli_opts)
    if not drop:
        return base
    click.echo(f"note: the suite's options for {', '.join(drop)} are not used by this run (left out)", err=True)
    return {**base, "options": {p: o for p, o in base["options"].items() if p not in drop}}


@cli.command()
@click.argument("protocol", required=False,
                type=click.Choice(["clean", "matched", "mismatched", "multi-snr", "multi-condition"]))
@click.option("--suite", type=click.Path(dir_okay=False), metavar="FILE|NAME",
              help="Suite: a TOML file, or the name of a shipped one (`bench suites` lists them); flags override it. "
                   "Relative paths in the file are relative to the file's folder, those on the command line to "
                   "the working directory.")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME",
              help="Dataset plugin (repeatable; `bench plugins` lists them). Default: synthetic.")
@click.option("--ser-model", "ser_models", multiple=True, metavar="NAME",
              help="SER model plugin (repeatable). Default: svm-egemaps.")
@click.option("--enhancer", "enhancers", multiple=True, metavar="NAME",
              help="Enhancer plugin (repeatable). `none` is always added as the noisy baseline. Default: none, wiener.")
@click.option("--noise", "noise_sources", multiple=True, metavar="NAME",
              help="Noise source plugin (repeatable; its 'test' part is mixed in). Default: synthetic-noise.")
@click.option("--snr", "snrs", multiple=True, type=float, help="SNR in dB (repeatable). Default: -5 0 5 10 15 20.")
@click.option("--corruption", "corruptions", multiple=True, metavar="CHAIN",
              help="A corruption condition (repeatable), e.g. 'reverb(rt60=0.6)', 'babble(snr=0)', 'telephone', "
                   "'reverb(rt60=0.6)+noise(snr=5)'. Without --snr (and a suite's snrs) the run has no plain "
                   "additive-noise conditions. `bench plugins` lists the corruptions, `bench plugins reverb` "
                   "their parameters.")
@click.option("--train-snr", "train_snrs", multiple=True, type=float, help="multi-snr: training SNRs (default: --snr).")
@click.option("--test-snr", "test_snrs", multiple=True, type=float, help="multi-snr: test SNRs (default: --snr).")
@click.option("--cv", type=click.Choice(["auto", "loso", "partition", "group-kfold", "dataset", "emobox"]),
              help="Folds: leave-one-speaker-out (loso), official train/dev/test partitions, group-kfold "
                   "(--cv-folds folds of whole speakers, balanced by emotion: for corpora whose speakers each "
                   "have one emotion), dataset (the corpus's own folds, e.g. IEMOCAP's sessions) or emobox "
                   "(EmoBox's published folds: -o DATASET.emobox=PATH to its data/<corpus>/ folder); auto "
                   "(default): the corpus's own folds, else partitions when it has them, else loso.")
@click.option("--cv-folds", type=click.IntRange(min=2), default=None, help="Folds of --cv group-kfold (default 5).")
@click.option("--seed", type=int, help="Run seed (mixing, model seeds). Default 0.")
@click.option("--option", "-o", "options", multiple=True, metavar="PLUGIN.KEY=VALUE",
              help="Plugin option, e.g. -o wiener.gain_floor_db=-20 (value parsed as JSON if possible).")
@click.option("--data-root", "data_roots", multiple=True, metavar="DATASET=PATH",
              help="Shorthand for -o DATASET.root=PATH.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Workers (default: the usable CPU cores; with the process executor 1 = in-process).")
@click.option("--executor", type=click.Choice(["process", "inline", "dask"]), default="process", show_default=True,
              help="Where work runs: a local process pool (-j workers), inline in this process (debugging), or "
                   "Dask distributed (--scheduler ADDRESS, or a local cluster of -j workers; needs "
                   "pip install 'ser-bench[dask]').")
@click.option("--scheduler", envvar="BENCH_DASK_SCHEDULER", default=None, metavar="tcp://HOST:PORT",
              help="Dask scheduler to run on (with --executor dask; env BENCH_DASK_SCHEDULER). Its workers need "
                   "ser-bench installed and --cache on a path they share.")
@click.option("--on-bad-audio", type=click.Choice(["fail", "skip"]), default=None,
              help="A bad utterance (missing/corrupt/empty/truncated file, NaN samples, silent speech): fail the "
                   "run before computing anything (default), or skip it and record it in the registry.")
@click.option("--cache", "cache_dir", envvar="BENCH_CACHE", default=None,
              help="Artefact cache folder (env BENCH_CACHE; default ./.bench-cache).")
@click.option("--keep-audio", type=click.Choice(["none", "enhanced", "all"]), default=None,
              help="Audio the cache keeps: none (default; features, fits and predictions are always kept, so a "
                   "warm rerun needs no audio), enhanced (enhanced signals as 16-bit FLAC, so a new SER model "
                   "reruns no enhancer), all (mixtures too).")
@click.option("--quality", is_flag=True, default=None,
              help="Also measure enhancement quality and emotion preservation (PESQ, STOI, SI-SDR, F0/loudness "
                   "contour fidelity, eGeMAPS distance) of every noisy/enhanced condition; slower.")
@click.option("--dry-run", is_flag=True, help="Print the cells and their count; compute nothing.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bars (the plugins' own bars too); stdout holds only the results table, the run's "
                   "messages go to stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the results table as JSON (on stdout; messages on stderr).")
@db_option
def run(protocol, suite, datasets, ser_models, enhancers, noise_sources, snrs, corruptions, train_snrs, test_snrs, cv,
        cv_folds, seed, options, data_roots, jobs, executor, scheduler, on_bad_audio, cache_dir, keep_audio, quality,
        dry_run, quiet, as_json, db) -> None:
    """Run a PROTOCOL (clean | matched | mismatched | multi-snr | multi-condition) and store every result,
    then print the results table: per SER model and enhancer, the metric at each SNR with its 95 % CI
    and + / - where enhanced is significantly better / worse than noisy.

    Re-running the same command computes only what is missing (an interrupted run resumes).

    \b
    Examples:
      bench run mismatched
      bench run matched --enhancer rescnn --snr 0 --snr 10
      bench run --suite emodb_mismatched --data-root emodb=../shared/data/emodb
    """
    from .config import make_config, merge, parse_option
    from .plugins import default_registry

    suite_path, base = _load_suite(suite) if suite else (None, {})
    over: dict = {}
    if protocol:
        over["protocol"] = protocol
    elif "protocol" not in base:
        raise click.UsageError("give a PROTOCOL (clean, matched, mismatched, multi-snr, multi-condition) or a --suite "
                               "that sets one")
    for field, val in (("datasets", datasets), ("ser_models", ser_models), ("noise_sources", noise_sources),
                       ("snrs", snrs), ("train_snrs", train_snrs), ("test_snrs", test_snrs)):
        if val:
            over[field] = list(val)
    if corruptions:
        over["corruptions"] = list(corruptions)
        if not snrs and "snrs" not in base:
            over["snrs"] = []
    if enhancers:
        over["enhancers"] = ["none"] + [e for e in enhancers if e != "none"]
    if cv:
        over["cv"] = cv
    if cv_folds:
        over["cv_folds"] = cv_folds
    if seed is not None:
        over["seed"] = seed
    if quality:
        over["quality"] = True
    if on_bad_audio:
        over["on_bad_audio"] = on_bad_audio
    if keep_audio:
        over["keep_audio"] = keep_audio
    if scheduler and click.get_current_context().get_parameter_source("executor") == click.core.ParameterSource.DEFAULT:
        executor = "dask"  # --scheduler implies the Dask executor
    opts: dict = {}
    for text in options:
        p, k, v = parse_option(text)
        opts.setdefault(p, {})[k] = v
    for text in data_roots:
        name, eq, path = text.partition("=")
        if not eq or not name or not path:
            raise click.BadParameter(f"{text!r}: expected DATASET=PATH", param_hint="--data-root")
        opts.setdefault(name, {})["root"] = path
    if opts:
        over["options"] = opts
    base = _without_unused_suite_options(base, over, opts)
    config = make_config(merge(base, over), source=str(suite_path or "command line"))
    if config.quality:
        _require_quality_extra()
    from .db import Store
    from .runner import plan, run as run_protocol

    if dry_run:
        _, folds, cells = plan(config, default_registry())
        for c in cells:
            click.echo(f"{c.dataset}\t{c.ser_model}\t{c.enhancer}\t{c.train.label()} -> {c.test.label()}\t{c.fold}")
        click.echo(f"{len(cells)} cells ({', '.join(f'{d}: {len(f)} folds' for d, f in folds.items())})")
        if config.quality:
            from .quality_runner import quality_cells

            click.echo(f"+ {len(quality_cells(config))} quality cells (noisy / enhanced x SNR x noise x dataset)")
        return
    store = Store(db)
    progress = not quiet and sys.stderr.isatty()
    say = _messages(quiet or as_json)
    with _stop_as_interrupt(store), progress_switch(progress):  # one switch for every bar
        summary = run_protocol(config, store=store, executor=executor, jobs=jobs, scheduler=scheduler,
                               cache_dir=cache_dir, progress=progress, echo=say)
    say(
        f"run {summary.run_id}: {summary.n_done} computed, {summary.n_skipped} already stored, "
        f"{summary.n_failed} failed, {summary.wall_s:.1f} s -> {store.url}"
    )
    for f in summary.failures[:10]:
        click.echo(f"  failed: {f}", err=True)
    if summary.run_id is not None:
        _results_table(store, [summary.run_id], as_json, lead="" if quiet or as_json else "\n")
    if summary.n_failed:
        raise SystemExit(1)


def _messages(to_stderr: bool):  # noqa: ANN202
    """Where a command's messages go: stdout, or stderr when stdout is for the table only (-q, --json)."""
    return (lambda s: click.echo(s, err=True)) if to_stderr else click.echo


def _results_table(store, run_ids: list[int], as_json: bool, lead: str = "") -> None:  # noqa: ANN001
    """The results table of runs (ser_bench.report.terminal), as text or JSON, on stdout."""
    from .report import terminal

    try:
        tabs = terminal.tables(store, run_ids)
    except BenchError:
        raise
    except Exception as exc:  # the runs are stored: showing them must not turn a good run into a failed one
        click.echo(f"(no results table: {type(exc).__name__}: {exc}; `bench report` shows the results)", err=True)
        return
    if as_json:
        click.echo(json.dumps(terminal.as_dict(tabs, run_ids), indent=2, allow_nan=False))
    else:
        click.echo(lead + terminal.render(tabs))


def _load_suite(text: str) -> tuple[Path, dict]:
    """A suite file or shipped suite name -> (its file, its fields with paths made absolute)."""
    from . import suites
    from .plugins import default_registry

    return suites.load(text, default_registry())


def _interrupt(signum, frame) -> None:  # noqa: ANN001
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@contextlib.contextmanager
def _stop_as_interrupt(store):  # noqa: ANN001, ANN202
    """SIGTERM (kill, a job scheduler's stop) would end the process on the spot, leaving its run
    "running" forever: raise it as an interrupt instead, so the runner records the run
    interrupted; then one line on stderr and exit status 130 (Ctrl-C alike)."""
    main = threading.current_thread() is threading.main_thread()  # handlers can only be set there
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        yield
    except KeyboardInterrupt as exc:
        click.echo(f"interrupted ({exc or 'Ctrl-C'}): the run is marked interrupted in {store.url}; re-run the same "
                   "command to resume", err=True)
        raise SystemExit(130) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _require_quality_extra() -> None:
    """--quality needs PESQ and STOI: fail before any work rather than store runs without them."""
    import importlib

    missing = []
    for mod in QUALITY_MODULES:
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise click.ClickException(f"--quality needs {' and '.join(missing)} (PESQ / STOI), which are not installed; "
                                   "run pip install 'ser-bench[quality]', or drop --quality")


#: the modules of the [quality] extra that --quality measures with
QUALITY_MODULES = ("pesq", "pystoi")


@cli.command()
@click.option("--out", default="reports", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@db_option
def report(out, db) -> None:
    """Write the HTML leaderboard (one offline file) from the results database."""
    from .db import Store
    from .report.build import build_report

    path = build_report(Store(db), Path(out))
    click.echo(f"wrote {path}")


@cli.command()
@click.option("--data-root", "data_roots", multiple=True, metavar="DATASET=PATH",
              help="A corpus of the paper: emodb, enterface (or ravdess standing in), recola (repeatable).")
@click.option("--snr", "snrs", multiple=True, type=float,
              help="Only these SNRs in dB (repeatable). Default: the paper's, -5..20 (multi-SNR 5, 10, 15).")
@click.option("--enhancer", "enhancers", multiple=True, metavar="NAME",
              help="Enhancers to run (repeatable). Default: rescnn (the paper's) and the best available "
                   "(deepfilternet if installed, else wiener).")
@click.option("--quick", is_flag=True,
              help="CPU preset: SNRs 0 and 20 dB (multi-SNR 5 and 15) unless --snr is given, end-to-end model "
                   "trained for 5 epochs.")
@click.option("--option", "-o", "options", multiple=True, metavar="PLUGIN.KEY=VALUE",
              help="Plugin option for every experiment that uses the plugin.")
@click.option("--noise-root", metavar="PATH", help="Noise folder (shorthand for -o folder.root=PATH).")
@click.option("--suites", "suites_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the paper suites (default: the shipped ones, `bench suites`).")
@click.option("--seed", type=int, help="Run seed. Default: the suites' (0).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Workers (default: usable cores).")
@click.option("--executor", type=click.Choice(["process", "inline", "dask"]), default="process", show_default=True)
@click.option("--cache", "cache_dir", envvar="BENCH_CACHE", default=None, help="Artefact cache folder (env BENCH_CACHE).")
@click.option("--out", default="reports", show_default=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--dry-run", is_flag=True, help="List the experiments and their cell counts; compute nothing.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bars; stdout holds only the results table (messages and the paper comparison go to "
                   "stderr).")
@click.option("--json", "as_json", is_flag=True, help="Print the results table as JSON (on stdout; the rest on stderr).")
@db_option
def paper(data_roots, snrs, enhancers, quick, options, noise_root, suites_dir, seed, jobs, executor, cache_dir, out,
          dry_run, quiet, as_json, db) -> None:
    """Reproduce Triantafyllopoulos et al. (Interspeech 2019): run every experiment the given corpora
    allow (the shipped suites *_matched|mismatched|multisnr, `bench suites`), then write the report
    with the paper's Tables 2-6 beside ours, print them and the results table of the runs.

    \b
    Example:
      bench paper --data-root emodb=../shared/data/emodb --data-root ravdess=../shared/data/ravdess --dry-run
    """
    from . import paper as paper_mod
    from .config import parse_option
    from .plugins import default_registry

    opts: dict = {}
    for text in options:
        p, k, v = parse_option(text)
        opts.setdefault(p, {})[k] = v
    if noise_root:
        opts.setdefault("folder", {})["root"] = noise_root
    reg = default_registry()
    plan = paper_mod.make_plan(paper_mod.parse_data_roots(data_roots), registry=reg, snrs=snrs, enhancers=enhancers,
                               quick=quick, options=opts, suites_dir=suites_dir, seed=seed)
    if dry_run:
        paper_mod.describe(plan, reg, click.echo)
        return
    from .db import Store
    from .report.paper import tables_from_store, text

    store = Store(db)
    progress = not quiet and sys.stderr.isatty()
    say = _messages(quiet or as_json)
    with _stop_as_interrupt(store), progress_switch(progress):
        res = paper_mod.run_paper(plan, store=store, out=out, executor=executor, jobs=jobs, cache_dir=cache_dir,
                                  progress=progress, echo=say)
    say("\n" + text(tables_from_store(store)))
    say(f"{len(res.runs)} experiments run, {len(plan.skipped)} skipped, {res.wall_s:.0f} s; wrote {res.report}")
    run_ids = [s.run_id for _, s in res.runs if s.run_id is not None]
    if run_ids or as_json:
        _results_table(store, run_ids, as_json, lead="" if quiet or as_json else "\nResults of these runs:\n")
    if res.failed:
        for exp, why in res.failed:
            click.echo(f"  failed: {exp.name}: {why}", err=True)
        raise SystemExit(1)


@cli.command()
@click.argument("suite", type=click.Path(dir_okay=False), metavar="FILE|NAME")
def validate(suite) -> None:
    """Validate a suite file or shipped suite (config fields and plugin names) without running it."""
    from .config import validate_suite
    from .plugins import default_registry
    from .suites import locate

    cfg = validate_suite(locate(suite))
    reg = default_registry()
    for kind, names in (("dataset", cfg.datasets), ("ser_model", cfg.ser_models), ("enhancer", cfg.enhancers),
                        ("noise_source", cfg.noise_sources)):
        reg.check(kind, names)
        for n in names:  # plugin options validate too (without touching data)
            reg.get(kind, n).Config(**cfg.plugin_options(n))
    click.echo(f"{suite}: ok ({cfg.protocol}, hash {cfg.config_hash()})")


@cli.group()
def runs() -> None:
    """Inspect stored runs."""


@runs.command(name="list")
@db_option
def runs_list(db) -> None:
    """One line per run."""
    from .db import Store

    df = Store(db).runs_frame()
    for r in df.itertuples():
        click.echo(f"{r.id:>4} {r.status:<11} {r.protocol:<10} cells {r.n_done}/{r.n_cells} failed {r.n_failed} "
                   f"{r.config_hash} {r.code_version} {r.created_at}")


@runs.command(name="show")
@click.argument("run_id", type=int)
@click.option("--table", "as_table", is_flag=True,
              help="Print the run's results table instead (as at the end of `bench run`).")
@click.option("--json", "as_json", is_flag=True, help="With --table: the table as JSON.")
@db_option
def runs_show(run_id, as_table, as_json, db) -> None:
    """A run's config, provenance, failed cells (with tracebacks) and skipped utterances; with
    --table, its results: per SER model and enhancer, the metric at each SNR with its 95 % CI and
    the significance mark.

    \b
    bench runs show 1 --table
    """
    from .db import Store

    store = Store(db)
    df = store.runs_frame()
    row = df[df.id == run_id]
    if row.empty:
        raise click.ClickException(f"no run {run_id}; `bench runs list` shows the runs")
    if as_json and not as_table:
        raise click.UsageError("--json goes with --table (the run itself is printed as JSON already)")
    if as_table:
        _results_table(store, [run_id], as_json)
        return
    r = row.iloc[0]
    click.echo(json.dumps({k: (json.loads(r[k]) if k.endswith("_json") else _plain(r[k])) for k in df.columns}, indent=2))
    cells = store.cells_frame([run_id])
    for c in cells[cells.status == "failed"].itertuples():
        click.echo(f"\nFAILED {c.ser_model} {c.train_condition}@{c.train_snr} -> {c.test_condition}@{c.test_snr} "
                   f"{c.enhancer} [{c.fold}]\n{c.traceback}")
    notes = store.utterance_notes_frame([run_id])
    for n in notes[notes.kind == "skipped"].itertuples():
        click.echo(f"\nSKIPPED {n.dataset}/{n.utterance_id}: {n.detail}")
    n_conv = int((notes.kind == "converted").sum())
    if n_conv:
        click.echo(f"\n{n_conv} utterance(s) converted on loading (downmix/resampling); see table utterance_notes")


def _plain(v):  # noqa: ANN001, ANN202
    """A pandas cell as its JSON value: numbers stay numbers, missing is null, times are ISO 8601."""
    import pandas as pd

    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v.item() if hasattr(v, "item") else v


@cli.group(name="db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command()
@db_option
def migrate(db) -> None:
    """Apply pending schema migrations."""
    from .db import Store
    from .db.migrations import schema_version

    store = Store(db)
    click.echo(f"{store.url}: schema {', '.join(schema_version(store.engine))}")


@db_group.command(name="path")
@db_option
def db_path(db) -> None:
    """Print the database URL in use."""
    from .db import default_db_url

    click.echo(default_db_url(db))


from .cli_enhance import enhance, eval_enhancer, train  # noqa: E402  (bench train / enhance / eval-enhancer)

cli.add_command(train)
cli.add_command(enhance)
cli.add_command(eval_enhancer)

from .cli_cache import cache  # noqa: E402  (bench cache du / prune)
from .cli_info import docs, plugins, suites  # noqa: E402  (bench plugins / docs / suites)

cli.add_command(cache)
cli.add_command(plugins)
cli.add_command(docs)
cli.add_command(suites)


def _load_plugin_commands() -> None:
    """Let plugins add commands (hook ``register_commands``)."""
    try:
        from .plugins import make_plugin_manager

        make_plugin_manager().hook.register_commands(cli=cli)
    except BenchError:
        pass  # a broken plugin is reported by the commands that need it


_load_plugin_commands()


if __name__ == "__main__":  # python -m ser_bench.cli
    cli()
