"""Child processes (dbt, `dagster dev`) that never outlive, or outlast the writer lock of, their command.

Three guards, for three ways a command ends:
  - SIGKILL of the command: every child is started with PR_SET_PDEATHSIG = SIGKILL (Linux), so the
    kernel kills it with its parent. dbt started by dagster-dbt, which gives no preexec hook, sets it on
    itself (orchestration.dbt.child).
  - SIGTERM / SIGINT / SIGHUP: `stop_on_signals()` turns them into `Stopped`, which unwinds the command
    like Ctrl-C; whoever waits for a child stops it (`stop_process`) and waits for it in that unwinding,
    which happens inside the writer lock's block, so the lock is released only after the child is gone.
  - Any other exit of the block waiting for a child (an error, a Dagster step interrupted): the same
    `stop_process` in a `finally`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

import psutil

PR_SET_PDEATHSIG = 1
# The pid a child expects as its parent: a child that finds another one was orphaned before it could
# ask for the death signal (the parent died between fork and prctl) and must not run.
PARENT_PID_VARIABLE = "ATTENDANCE_PARENT_PID"
# How long a stopped dbt gets to cancel its queries (it does so on SIGINT) before it is killed.
GRACE_SECONDS = 15.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The command was asked to stop by a signal. A KeyboardInterrupt, so that code which already cleans
    up after Ctrl-C (Dagster, dbt, `attendance-sync ui`) does the same here, and `except Exception`
    blocks never swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def request_death_signal() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (a preexec_fn: prctl only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_parent() -> None:
    """At the start of a child: request the death signal, and exit if the parent is already gone."""
    request_death_signal()
    expected = os.environ.get(PARENT_PID_VARIABLE)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        os._exit(1)


def child_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with this process named as the expected parent."""
    return {**(env if env is not None else os.environ), PARENT_PID_VARIABLE: str(os.getpid())}


_stopping = threading.Event()


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    # Only the first signal unwinds: a second one must not interrupt the clean-up of the first (which
    # waits for the children before the writer lock is released). The clean-up is bounded anyway.
    if _stopping.is_set():
        return
    _stopping.set()
    raise Stopped(signum)


def stop_on_signals() -> None:
    """Make SIGTERM, SIGINT and SIGHUP raise `Stopped` in the main thread (call once, from main)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _stopping.clear()
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal(process: subprocess.Popen[bytes] | subprocess.Popen[str], signum: int) -> None:
    """Signal the child's process group when it leads one of its own, else the child alone."""
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str], *, grace_s: float = GRACE_SECONDS,
                 first_signal: int = signal.SIGINT) -> int:
    """Stop a child and everything it started; returns once all of them are gone (SIGKILL after grace_s)."""
    descendants = _descendants(process.pid)
    if process.poll() is None:
        _signal(process, first_signal)
        try:
            _wait(process, grace_s)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL)
            process.wait()
    # Grandchildren in other process groups (or that ignored the signal) go too.
    alive = [p for p in descendants if p.is_running()]
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    psutil.wait_procs(alive, timeout=10)
    return process.returncode


def _wait(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float) -> None:
    # Reading what is left of its output keeps a stopping child from blocking on a full pipe.
    try:
        process.communicate(timeout=timeout)
    except (ValueError, OSError):
        process.wait(timeout=timeout)


def run_child(command: Sequence[str], *, env: Mapping[str, str], cwd: Path | str,
              timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing its output; it dies with this process and is stopped
    (and waited for) when anything, a signal or a timeout, ends the wait early."""
    process = subprocess.Popen(list(command), env=child_environment(env), cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=request_death_signal)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        stop_process(process)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
