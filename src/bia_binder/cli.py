"""The ``bia-binder`` command. Each area registers its own subcommands (``register(subparsers)``)."""

from __future__ import annotations

import argparse
import importlib
import sys

#: modules exposing ``register(subparsers)``; each adds its subcommands with ``set_defaults(func=...)``
SUBCOMMAND_MODULES = (
    "bia_binder.up",  # up, launch
    "bia_binder.builder.cli",  # build, run, cache
    "bia_binder.sessions.doctor",  # doctor
    "bia_binder.portal.users",  # users
    "bia_binder.deploy.cli",  # kubernetes values
    "bia_binder.federation.app",  # federation
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bia-binder", description="Binder-compatible compute for bioimage analysis")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"bia-binder {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # area not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
