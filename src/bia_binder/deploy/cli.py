"""``bia-binder kubernetes values --config FILE [--output values.yaml]``: the Helm chart's values from a config file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HEADER = """\
# Values of deploy/helm/bia-binder, written by `bia-binder kubernetes values --config {config}`.
# Regenerate them after changing the config file; secrets are referenced by name, never written here.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    kubernetes = subparsers.add_parser("kubernetes", help="Deploy on Kubernetes with the Helm chart")
    actions = kubernetes.add_subparsers(dest="kubernetes_command", metavar="ACTION")
    values = actions.add_parser("values", help="Write the chart's values from the config file `bia-binder up` reads")
    values.add_argument("--config", required=True, help="The Python config file (c.ResourceProfiles, ...)")
    values.add_argument("--output", "-o", help="Where to write the values (default: standard output)")
    values.add_argument(
        "--auth", choices=["none", "oidc"], help="Logins (default: oidc when the config sets up GenericOAuthenticator)"
    )
    values.set_defaults(func=write_values)
    kubernetes.set_defaults(func=lambda args: kubernetes.print_help() or 2)


def write_values(args: argparse.Namespace) -> int:
    from .validate import ValuesError, check_jupyterhub_values
    from .values import chart_values, load_config

    try:
        result = chart_values(load_config(args.config), auth=args.auth)
        check_jupyterhub_values(result.values["jupyterhub"])
    except (OSError, SyntaxError, ValueError, ValuesError) as e:
        print(f"bia-binder kubernetes values: {e}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    text = HEADER.format(config=args.config) + yaml.safe_dump(result.values, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
        print(f"Wrote {args.output}: install with `helm upgrade --install bia-binder deploy/helm/bia-binder "
              f"--namespace binder --create-namespace -f {args.output}`", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
