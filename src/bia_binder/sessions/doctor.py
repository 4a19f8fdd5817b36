"""Which isolation guarantees hold on this host: ``bia-binder doctor``, and the report ``bia-binder up`` prints.

    report = guarantee_report(config, unsafe=args.unsafe_no_sandbox)
    print(report.text())
    report.anonymous_allowed     # False: `up` must refuse anonymous launches (Sandbox does, via check_allowed)

``bia-binder doctor`` exits 0 when anonymous launches are safe here, 1 otherwise.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from .disks import EphemeralDisks
from .sandbox import Capabilities, Check, Sandbox


@dataclass(frozen=True)
class Report:
    """The guarantees, each with why it holds or not, and what follows for anonymous launches."""

    guarantees: list[tuple[str, Check]]
    gpus: list[int]
    unsafe: bool
    #: what else holds, informational: (name, one line)
    notes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_capabilities(cls, caps: Capabilities, unsafe: bool, notes=()) -> Report:
        return cls(guarantees=caps.checks(), gpus=caps.gpus, unsafe=unsafe, notes=tuple(notes))

    @property
    def isolated(self) -> bool:
        return all(check.ok for _, check in self.guarantees)

    @property
    def anonymous_allowed(self) -> bool:
        return self.isolated or self.unsafe

    def missing(self) -> list[str]:
        return [name for name, check in self.guarantees if not check.ok]

    def text(self) -> str:
        width = max(len(name) for name, _ in self.guarantees)
        lines = ["Session isolation on this host:"]
        for name, check in self.guarantees:
            lines.append(f"  [{'ok' if check.ok else 'NO'}] {name.ljust(width)}  {check.detail}")
        lines.append(
            f"  [--] {'GPUs'.ljust(width)}  "
            + (f"devices {self.gpus} (CUDA_VISIBLE_DEVICES per session)" if self.gpus else "none found")
        )
        for name, detail in self.notes:
            lines.append(f"  [--] {name.ljust(width)}  {detail}")
        if self.isolated:
            lines.append("Anonymous launches: allowed (all guarantees hold).")
        elif self.unsafe:
            lines.append(f"Anonymous launches: ALLOWED WITHOUT {', '.join(self.missing())} (--unsafe-no-sandbox).")
        else:
            lines.append(
                f"Anonymous launches: refused (missing {', '.join(self.missing())}); fix the above, "
                "or accept the risk with --unsafe-no-sandbox."
            )
        return "\n".join(lines)


def guarantee_report(config: Config | None = None, unsafe: bool = False) -> Report:
    """Probe this host with the sandbox configuration ``config`` (a ``c.Sandbox...`` traitlets Config)."""
    sandbox = Sandbox(config=config or Config())
    caps = sandbox.capabilities
    return Report.from_capabilities(caps, unsafe or sandbox.allow_unsafe, notes=_notes(sandbox, caps))


def _notes(sandbox: Sandbox, caps: Capabilities) -> list[tuple[str, str]]:
    no_disks = EphemeralDisks.available()
    builds = (
        f"in the same sandbox as sessions, as uid {sandbox.build_uid}"
        if caps.isolated
        else "as anonymous sessions: refused, or with what the host gives under --unsafe-no-sandbox"
    )
    from ..portal.encryption import HomeEncryption

    return [
        ("disk limit", f"none for anonymous sessions ({no_disks})" if no_disks else "anonymous sessions write to a filesystem of their profile's disk_limit"),
        ("builds", builds),
        ("home encryption", HomeEncryption(config=sandbox.config).status_line()),
    ]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="say which session isolation guarantees hold on this host")
    parser.add_argument("--config", type=Path, help="bia-binder config file (Python, traitlets) to read c.Sandbox from")
    parser.add_argument(
        "--unsafe-no-sandbox", action="store_true", help="report as `bia-binder up --unsafe-no-sandbox` would run"
    )
    parser.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    config = Config()
    if args.config is not None:
        if not args.config.is_file():
            print(f"bia-binder doctor: config file {args.config} not found; pass an existing file to --config")
            return 2
        config = PyFileConfigLoader(args.config.name, path=str(args.config.parent.resolve())).load_config()
    report = guarantee_report(config, unsafe=args.unsafe_no_sandbox)
    print(report.text())
    return 0 if report.isolated else 1
