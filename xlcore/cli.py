"""Command line: ``xlcore grid``, ``xlcore book``, ``xlcore results``, ``xlcore profiles``,
``xlcore data fetch``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlcore.errors import ConfigError, XlcoreError


def _jobs(args: argparse.Namespace) -> int:
    """``--jobs``, else ``$XLCORE_JOBS``, else auto."""
    from xlcore.engine import resolve_jobs

    return resolve_jobs(args.jobs, default="auto")


def _grid(args: argparse.Namespace) -> int:
    from xlcore.config import make_config, parse_overrides
    from xlcore.grid import run_grids

    if args.chapter:
        configs = _chapter_configs(args)
    else:
        if args.param:
            raise ConfigError("--param needs --chapter NAME (the chapter whose runs to compute)")
        configs = [make_config(args.profile, parse_overrides(args.set or []))]
    root = Path(args.runs).resolve() if args.runs else None
    run_grids(
        configs, root=root, progress=not args.quiet, jobs=_jobs(args), scheduler=args.scheduler
    )
    return 0


def _chapter_configs(args: argparse.Namespace) -> list:
    """The configs chapter ``--chapter`` reads with its default parameters and ``--param``."""
    from xlcore import chapter
    from xlcore.book import PROJECT_DIR, chapter_parameters, check_parameters, parse_parameters

    if args.set:
        raise ConfigError(
            "--set and --chapter do not combine: give config keys as chapter parameters, e.g. "
            "--param 'overrides=[\"align_alpha=0.5\"]'"
        )
    given = parse_parameters(args.param or [])
    check_parameters(PROJECT_DIR, args.chapter, given)
    parameters = {**chapter_parameters(PROJECT_DIR, args.chapter), **given}
    parameters.pop("profile", None)
    return chapter.experiment_configs(args.chapter, args.profile, parameters)


def _book(args: argparse.Namespace) -> int:
    from xlcore.book import build, parse_parameters

    if args.param and not args.chapter:
        raise ConfigError("--param needs --chapter NAME (the chapter to re-execute)")
    build(
        args.profile,
        only=args.chapter or None,
        parameters=parse_parameters(args.param or []),
        force=args.force,
        progress=not args.quiet,
        runs=args.runs,
        jobs=_jobs(args),
        scheduler=args.scheduler,
        results=args.results,
    )
    return 0


def _results(args: argparse.Namespace) -> int:
    from xlcore.runs import results_frame

    root = Path(args.runs).resolve() if args.runs else None
    frame = results_frame(root, kinds=tuple(args.kind) if args.kind else None)
    if frame.empty:
        print("no complete runs yet; run `xlcore grid --profile smoke` first", file=sys.stderr)
        return 1
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        print(frame.to_markdown(index=False, floatfmt=".4f"))
    return 0


def _headline(args: argparse.Namespace) -> int:
    from xlcore.headline import headline, write_into

    block = headline(args.archive)
    if not args.readme:
        print(block)
        return 0
    readme = Path(args.readme)
    write_into(readme, block)
    print(f"headline of {args.archive} written into {readme}")
    return 0


def _profiles(args: argparse.Namespace) -> int:
    from xlcore.config import PROFILE_NAMES, make_config

    for name in PROFILE_NAMES:
        cfg = make_config(name)
        print(
            f"{name}: model={cfg.model.model_name_or_path} data={cfg.data.root} "
            f"pairs={','.join(cfg.data.pairs)} "
            f"tgt_langs={','.join(cfg.data.tgt_langs)} tasks={','.join(cfg.data.tasks)} "
            f"regimes={','.join(cfg.finetune.regimes)} "
            f"seeds={','.join(map(str, cfg.finetune.seeds))}"
        )
    return 0


JOBS_HELP = (
    "runs computed at once, in the worker processes of a local Dask cluster (default: "
    "$XLCORE_JOBS, else auto: 2 on a CPU-only machine with two or more cores, 1 with a GPU)"
)
SCHEDULER_HELP = (
    "address of a running Dask scheduler (e.g. tcp://login1:8786, one started by dask-jobqueue) "
    "that computes the runs instead (default: $XLCORE_SCHEDULER); the runs directory and the "
    "data must be on a filesystem every worker sees"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlcore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    grid = sub.add_parser("grid", help="run every step of a profile (finished runs are reused)")
    grid.add_argument("--profile", default="mini", help="smoke, mini (default), extended or paper")
    grid.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set pairs=en-fi --set seeds=1,2",
    )
    grid.add_argument(
        "--chapter", help="compute the runs this chapter reads (e.g. combining), with --param"
    )
    grid.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a chapter parameter as a Python literal, e.g. --param 'pairs=[\"en-fi\"]'",
    )
    grid.add_argument("--runs", help="runs directory (default: $XLCORE_RUNS or ./runs)")
    grid.add_argument("--jobs", help=JOBS_HELP)
    grid.add_argument("--scheduler", help=SCHEDULER_HELP)
    grid.add_argument("--quiet", action="store_true", help="no progress bars")
    grid.set_defaults(func=_grid)

    book = sub.add_parser(
        "book",
        help="execute the chapters (finished runs and unchanged chapters are reused) "
        "and build the HTML book into _build/html",
    )
    book.add_argument("--profile", default="mini", help="smoke, mini (default), extended or paper")
    book.add_argument("--chapter", help="re-execute this chapter (e.g. distances) with --param")
    book.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a chapter parameter as a Python literal, e.g. --param 'pairs=[\"en-fi\"]'",
    )
    book.add_argument("--force", action="store_true", help="re-execute unchanged chapters too")
    book.add_argument(
        "--results",
        help="build the book from this results archive (a .zip a build wrote), computing nothing",
    )
    book.add_argument("--runs", help="runs directory (default: $XLCORE_RUNS or ./runs)")
    book.add_argument("--jobs", help=JOBS_HELP)
    book.add_argument("--scheduler", help=SCHEDULER_HELP)
    book.add_argument("--quiet", action="store_true", help="no progress bars")
    book.set_defaults(func=_book)

    res = sub.add_parser("results", help="print all finished runs as one table")
    res.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    res.add_argument("--kind", action="append", help="only these run kinds (e.g. evaluate)")
    res.add_argument("--runs", help="runs directory (default: $XLCORE_RUNS or ./runs)")
    res.set_defaults(func=_results)

    prof = sub.add_parser("profiles", help="list the named profiles")
    prof.set_defaults(func=_profiles)

    head = sub.add_parser(
        "headline", help="print (or write into a README) where an archived build stands"
    )
    head.add_argument("archive", help="a results archive (.zip) a build wrote")
    head.add_argument("--readme", help="rewrite this file's headline block instead of printing")
    head.set_defaults(func=_headline)

    data = sub.add_parser("data", help="data root management")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    from xlcore.fetch import add_fetch_parser

    add_fetch_parser(data_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except XlcoreError as exc:
        print(f"xlcore: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
