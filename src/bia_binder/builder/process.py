"""Running build commands: output streamed line by line, whole process group killed on limits."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base import LogFn

#: how many trailing output lines are kept to explain a failure
TAIL_LINES = 40


@dataclass
class CommandResult:
    returncode: int
    tail: list[str]  # the last output lines (stdout and stderr interleaved, newline-stripped)


class CommandLimitExceeded(Exception):
    """A watchdog decided the command must stop (its message says why)."""


async def run_streaming(
    argv: Sequence[str],
    log: LogFn,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    watchdog: Callable[[], Awaitable[str | None]] | None = None,
    watchdog_interval: float = 1.0,
) -> CommandResult:
    """Run ``argv``, give each output line to ``log`` as it comes, return the exit status and last lines.

    ``watchdog`` is polled while the command runs; when it returns a reason, the command's whole
    process group is killed and :class:`CommandLimitExceeded` is raised with that reason. The
    group is also killed when the awaiting task is cancelled (e.g. by a build timeout).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # own process group: a limit kills postBuild's children too
    )
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    async def pump() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            tail.append(line)
            log(line + "\n")

    pump_task = asyncio.ensure_future(pump())
    try:
        while not pump_task.done():
            done, _ = await asyncio.wait({pump_task}, timeout=watchdog_interval)
            if not done and watchdog is not None:
                reason = await watchdog()
                if reason:
                    raise CommandLimitExceeded(reason)
        await pump_task
        returncode = await proc.wait()
    except BaseException:
        _kill_group(proc)
        pump_task.cancel()
        # Processes that left the group (a sandbox's, a daemon postBuild started) may hold the output pipe
        # open, and Python 3.11's wait() returns only once every pipe is closed: stop reading it ourselves.
        # The build's sandbox kills those processes right after (Session.cleanup).
        transport = proc._transport.get_pipe_transport(1)  # noqa: SLF001 - asyncio offers no public way
        if transport is not None:
            transport.close()
        await proc.wait()
        raise
    return CommandResult(returncode, list(tail))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it ended in the meantime
            os.killpg(proc.pid, signal.SIGKILL)
