"""The command line: ``python -m fastapi_streamkit <command>``.

``worker module:app`` runs an app's lifespan (brokers, consumers, hooks, mounted sub-apps)
without serving HTTP, until SIGTERM/SIGINT; ``asyncapi module:app [--yaml]`` prints the
app's AsyncAPI document. Each command is one argparse subcommand.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio

from .exceptions import UsageError

__all__ = ["main"]


def _add_worker(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = commands.add_parser(
        "worker",
        help="run an app's lifespan (brokers, consumers) without HTTP",
        description="Import module:app like uvicorn and run its ASGI lifespan until "
        "SIGTERM/SIGINT; exit 0 after a clean shutdown, 1 when startup or shutdown fails.",
    )
    worker.add_argument("app", help="the ASGI app as module:attribute, e.g. main:app")
    worker.add_argument("--app-dir", default=".", help="directory to import the module from")
    worker.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds the lifespan shutdown (in-flight handlers) may take (default 30)",
    )
    worker.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    worker.set_defaults(run=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    from ._worker import import_app, run_worker

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = import_app(args.app, args.app_dir)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code: int = anyio.run(lambda: run_worker(app, shutdown_timeout=args.shutdown_timeout))
    return code


def _add_asyncapi(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "asyncapi",
        help="print an app's AsyncAPI 3.0.0 document",
        description="Import module:app like uvicorn and print the AsyncAPI 3.0.0 document of "
        "its subscribers, publishers, streaming and WebSocket routes (JSON, or YAML).",
    )
    command.add_argument("app", help="the FastAPI app as module:attribute, e.g. main:app")
    command.add_argument("--app-dir", default=".", help="directory to import the module from")
    command.add_argument("--yaml", action="store_true", help="print YAML (needs PyYAML)")
    command.set_defaults(run=_run_asyncapi)


def _run_asyncapi(args: argparse.Namespace) -> int:
    from ._worker import import_app
    from .asyncapi import dump_asyncapi
    from .exceptions import MissingDependency

    try:
        text = dump_asyncapi(import_app(args.app, args.app_dir), yaml=args.yaml)
    except (UsageError, MissingDependency) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m fastapi_streamkit`` parser, one subcommand per command."""
    parser = argparse.ArgumentParser(prog="python -m fastapi_streamkit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    _add_worker(commands)
    _add_asyncapi(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv``; the process exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
