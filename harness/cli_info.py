"""``bench plugins``, ``bench docs`` and ``bench suites``: what is installed, documented and shipped
(read-only commands; ``harness/cli.py`` adds them to the ``bench`` group)."""
from __future__ import annotations

import json

import click


@click.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--options", "with_options", is_flag=True,
              help="Also list every plugin's options (imports every plugin: slower).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(names, with_options, as_json) -> None:
    """List every plugin (built-in and third-party); with NAME, its options.

    \b
    Columns: kind; name (what --dataset/--enhancer/... and -o NAME.KEY=VALUE take);
    the distribution it comes from and that distribution's version; the plugin class's
    version (part of every cache key: a new one recomputes its outputs); description.
    `bench plugins NAME` shows one plugin with every option: type, default, description.

    Third-party packages register through the `ser_bench` entry-point group;
    BENCH_LOAD_PLUGINS=a,b (entry-point or distribution names) loads only those,
    BENCH_LOAD_PLUGINS= none. Writing one: `bench docs plugin`.
    """
    from .plugins import default_registry

    reg = default_registry()
    entries = list(reg.entries()) if not names else [e for n in names for e in reg.find(n)]
    rows = [_plugin_row(e, with_options or bool(names)) for e in entries]
    broken = [r for r in rows if r["problem"]]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif names or with_options:
        for r in rows:
            _echo_plugin(r)
    else:
        head = {"kind": "KIND", "name": "NAME", "distribution": "DISTRIBUTION", "version": "VERSION",
                "class_version": "CLASS-VERSION", "description": "DESCRIPTION"}
        widths = {k: max(len(str(r[k])) for r in [head, *rows]) for k in list(head)[:-1]}
        for r in [head, *rows]:
            desc = f"BROKEN: {r['problem']}" if r.get("problem") else r["description"]
            click.echo("  ".join(f"{r[k]:<{w}}" for k, w in widths.items()) + f"  {desc}")
    if broken:
        raise click.ClickException(f"{len(broken)} plugin(s) broken: " + "; ".join(r["problem"] for r in broken))


def _plugin_row(entry, with_options: bool) -> dict:
    """One plugin as `bench plugins` shows it (options only when asked: they need the class imported)."""
    from .errors import PluginError

    row = {"kind": entry.kind, "name": entry.name, "plugin": entry.plugin, "distribution": entry.dist,
           "version": entry.dist_version, "class_version": entry.class_version(), "description": entry.describe(),
           "problem": entry.problem()}
    if with_options and not row["problem"]:
        from .plugininfo import options

        try:
            cls = entry.resolve()
            row["class"] = f"{cls.__module__}.{cls.__qualname__}"
            row["options"] = [o.as_dict() for o in options(cls)]
            if entry.kind == "corruption":  # a step's parameters: NAME(KEY=VALUE, ...)
                row["params"] = [o.as_dict() for o in options(cls, "Params")]
                row["severity"] = getattr(cls, "severity", "")
        except PluginError as exc:
            row["problem"] = str(exc)
    return row


def _echo_plugin(r: dict) -> None:
    import textwrap

    from .registry import LABEL

    click.echo(f"{r['name']}  ({LABEL[r['kind']]}; {r['distribution']} {r['version']}; class version "
               f"{r['class_version']})")
    click.echo(f"  {r['description']}")
    if r["problem"]:
        click.echo(f"  BROKEN: {r['problem']}")
        return
    if r.get("class"):
        click.echo(f"  class {r['class']}")
    if r.get("params") is not None:
        sev = f"; severity: {r['severity']}" if r.get("severity") else ""
        click.echo(f"  step parameters (--corruption '{r['name']}(KEY=VALUE, ...)'{sev}):")
        for o in r["params"]:
            click.echo(f"    {o['name']}: {o['type']} = {o['default']}")
            for line in textwrap.wrap(o["description"] or "(undocumented)", 88):
                click.echo(f"        {line}")
    opts = r.get("options", [])
    if not opts:
        click.echo("  no options\n")
        return
    click.echo(f"  options (-o {r['name']}.KEY=VALUE; value as JSON; in a suite: [options.{r['name']}]):")
    for o in opts:
        click.echo(f"    {o['name']}: {o['type']} = {o['default']}")
        for line in textwrap.wrap(o["description"] or "(undocumented)", 88):
            click.echo(f"        {line}")
    click.echo("")


@click.command()
@click.argument("topic", required=False)
@click.option("--path", "show_path", is_flag=True, help="Print where the topic's file (or folder) is instead.")
def docs(topic, show_path) -> None:
    """Print the docs that ship with ser-bench; without TOPIC, list the topics.

    \b
    bench docs plugin                 # writing a plugin package, start to finish
    bench docs example                # every file of the example plugin package
    cp -r "$(bench docs --path example)" ser-bench-mypkg   # start from a copy
    """
    from .docs import locate, render, topics

    if topic is None:
        if show_path:
            from .docs import docs_dir

            click.echo(docs_dir())
            return
        for name, title in topics().items():
            click.echo(f"{name:<18} {title}")
        click.echo("\n`bench docs TOPIC` prints one (`plugin` is short for writing-a-plugin).")
        return
    click.echo(locate(topic) if show_path else render(topic).rstrip("\n"))


@click.command()
@click.argument("name", required=False)
@click.option("--path", "show_path", is_flag=True, help="Print the suite file's path instead (to copy and edit it).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def suites(name, show_path, as_json) -> None:
    """List the suites that ship with ser-bench (the paper's experiments) with their cells; with NAME,
    one suite's cells (per fold: each fold of the corpus repeats them).

    \b
    bench suites                         # every shipped suite: protocol, corpus, grid, cells per fold
    bench suites emodb_mismatched        # its cells, and how to run it
    cp "$(bench suites --path emodb_mismatched)" my_suite.toml   # start your own from a copy

    Run one with `bench run --suite NAME` (a path to any suite file works too). Relative paths in
    a suite file are relative to the file's folder; paths on the command line (--data-root, -o)
    to the working directory.
    """
    from . import suites as suites_mod

    files = suites_mod.shipped()
    if name is not None:
        path = suites_mod.locate(name)
        if show_path:
            click.echo(str(path))
            return
        info = suites_mod.summary(path)
        if as_json:
            click.echo(json.dumps(info, indent=2))
            return
        click.echo(f"{info['name']}: {info['title'] or ''} ({info['protocol']}, {', '.join(info['datasets'])}, cv "
                   f"{info['cv']})\n  file: {info['path']}\n  run:  {info['usage']}")
        click.echo(f"  {info['cells_per_fold']} cells per fold:")
        width = max(len(c["ser_model"]) for c in info["cells"])
        for ds in info["datasets"]:
            for c in info["cells"]:
                click.echo(f"    {ds}  {c['ser_model']:<{width}}  {c['train']} -> {c['test']}")
        return
    if show_path:
        click.echo(str(suites_mod.suites_dir()))
        return
    infos = [suites_mod.summary(p) for p in files.values()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    head = ["NAME", "PROTOCOL", "DATASETS", "CELLS/FOLD", "GRID"]
    rows = [[i["name"], i["protocol"], ",".join(i["datasets"]), str(i["cells_per_fold"]), _grid(i)] for i in infos]
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head) - 1)]
    for r in [head, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    click.echo(f"\n{len(infos)} suites in {suites_mod.suites_dir()}; `bench suites NAME` lists one's cells, "
               "`bench run --suite NAME --data-root DATASET=PATH` runs it.")


def _grid(info: dict) -> str:
    snrs = info["train_snrs"] and f"train {_snrs(info['train_snrs'])} x test {_snrs(info['test_snrs'] or info['snrs'])}"
    return (f"{' + '.join(info['ser_models'])}; {' / '.join(info['enhancers'])}; noise {' + '.join(info['noise_sources'])}; "
            f"SNRs {snrs or _snrs(info['snrs'])} dB")


def _snrs(values) -> str:  # noqa: ANN001
    return ", ".join(f"{s:g}" for s in values)
