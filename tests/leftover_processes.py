"""Every test stops every process it starts, children included: a pytest plugin that fails the
session when processes the tests started are still running after the last teardown.

pytest becomes a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a grandchild whose parent
died (a BentoML worker after its server was killed) is re-parented to pytest instead of to
init, where no check would ever see it. After each test the plugin notes which new processes
appeared; at the end, any of them still running is reported with the test that started it,
killed, and the session fails."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

import psutil
import pytest

PR_SET_CHILD_SUBREAPER = 36
# A process told to stop in a teardown may take a moment to go. The plugin's own tests
# (tests/test_leftover_processes.py) run sessions with a shorter wait.
GRACE_S = float(os.environ.get("LEFTOVER_PROCESSES_GRACE_S", "10"))

_first_seen: dict[tuple[int, float], str] = {}  # (pid, create time) -> test that left it


def _set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _running_descendants() -> dict[tuple[int, float], psutil.Process]:
    """Descendants of this pytest process that are still running (zombies have finished)."""
    found = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid, proc.create_time()] = proc
        except psutil.NoSuchProcess:
            continue
    return found


def pytest_configure(config) -> None:
    _set_subreaper()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = set(_running_descendants())
    yield
    for key in set(_running_descendants()) - before:
        _first_seen.setdefault(key, item.nodeid)


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:200] or proc.name()}"
    except psutil.NoSuchProcess:
        return f"pid {proc.pid}"


def pytest_sessionfinish(session, exitstatus) -> None:
    deadline = time.monotonic() + GRACE_S
    left = _running_descendants()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _running_descendants()
    if not left:
        return
    lines = [f"{_describe(proc)} (left by {_first_seen.get(key, 'the session')})"
             for key, proc in sorted(left.items())]
    for proc in left.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    session.config._leftover_report = lines  # noqa: SLF001 (read by the summary hook below)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    lines = getattr(config, "_leftover_report", None)
    if lines:
        terminalreporter.section("processes left running", sep="=", red=True)
        terminalreporter.line("These processes outlived the tests that started them (now "
                              "killed); stop every process a test starts, children included:")
        for line in lines:
            terminalreporter.line(f"  {line}")
