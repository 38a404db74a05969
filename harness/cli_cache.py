"""``bench cache du`` and ``bench cache prune``: the artefact cache's size, and removing entries."""
from __future__ import annotations

import json

import click

_CACHE = click.option("--cache", "cache_dir", envvar="BENCH_CACHE", default=None,
                      help="Artefact cache folder (env BENCH_CACHE; default ./.bench-cache).")


@click.group()
def cache() -> None:
    """The artefact cache: its size (du) and removing entries (prune).

    Features, fitted models and predictions are what a warm rerun reads; audio is kept only as
    `bench run --keep-audio` says. A pruned entry that a run needs is recomputed.
    """


@cache.command()
@_CACHE
@click.option("--json", "as_json", is_flag=True, help="Print JSON (bytes and entries by kind, dataset, enhancer).")
def du(cache_dir, as_json) -> None:
    """Size of the cache by kind, dataset and enhancer.

    \b
    Example:
      bench cache du
    """
    from .cache_admin import human, usage

    u = usage(cache_dir)
    if as_json:
        click.echo(json.dumps(u, indent=2))
        return
    click.echo(f"{u['root']}: {human(u['bytes'])} in {u['entries']} entries")
    for group, title in (("by_kind", "kind"), ("by_dataset", "dataset"), ("by_enhancer", "enhancer")):
        if u[group]:
            click.echo(f"\nby {title}:")
            for name, s in u[group].items():
                click.echo(f"  {name:<24} {human(s['bytes']):>10} {s['entries']:>9} entries")


@cache.command()
@_CACHE
@click.option("--max-size", default=None, metavar="SIZE",
              help="Remove the oldest entries (of --kind, if given) until the cache holds at most SIZE "
                   "(e.g. 500M, 2G, 64MiB).")
@click.option("--older-than", default=None, metavar="AGE",
              help="Remove entries written more than AGE ago (e.g. 30d, 12h, 2w).")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only entries of this kind (repeatable): audio, features, fits, audit, ... Alone: all of them.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
def prune(cache_dir, max_size, older_than, kinds, dry_run) -> None:
    """Remove cache entries by size budget, age and/or kind.

    \b
    Examples:
      bench cache prune --kind audio
      bench cache prune --max-size 2G --dry-run
      bench cache prune --older-than 30d --kind fits
    """
    from .cache_admin import human, parse_age, parse_size, prune as do_prune

    res = do_prune(cache_dir, max_size=parse_size(max_size) if max_size is not None else None,
                   older_than=parse_age(older_than) if older_than is not None else None,
                   kinds=tuple(kinds), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {res['removed_entries']} entries, {human(res['removed_bytes'])}; "
               f"cache {human(res['bytes_before'])} -> {human(res['bytes_after'])}")
    for kind, s in res["by_kind"].items():
        click.echo(f"  {kind:<12} {human(s['bytes']):>10} {s['entries']:>9} entries")
