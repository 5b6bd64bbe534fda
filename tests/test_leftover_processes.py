"""The check that every test stops the processes it starts: a session whose test leaves one
running (directly, or as an orphaned grandchild like a BentoML worker) fails and names it."""

from __future__ import annotations

import psutil

pytest_plugins = ["pytester"]

LEAKY_TESTS = '''
import subprocess, sys, time

def test_stops_what_it_starts():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.terminate()
    proc.wait(10)

def test_orphans_a_grandchild():
    # the parent exits at once; its child (the marker) is re-parented away from the test
    subprocess.run(["sh", "-c", "sleep 57.5 & exit 0"], check=True)
'''


def test_a_session_that_leaves_an_orphaned_process_running_fails_and_names_it(pytester,
                                                                             monkeypatch):
    # the inner session waits 1 s, not 10 s, for the orphan (which sleeps 57.5 s) to go
    monkeypatch.setenv("LEFTOVER_PROCESSES_GRACE_S", "1")
    pytester.makepyfile(test_leaky=LEAKY_TESTS)
    result = pytester.runpytest_subprocess("-p", "tests.leftover_processes", "-q")
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*processes left running*",
                                 "*sleep 57.5*left by test_leaky.py::test_orphans_a_grandchild*"])
    assert "2 passed" in result.stdout.str()
    # the check killed it, so this test leaves nothing behind either
    assert not [p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and "57.5" in p.info["cmdline"]]


def test_a_session_that_stops_its_processes_passes(pytester):
    pytester.makepyfile(test_tidy=LEAKY_TESTS.split("def test_orphans")[0])
    result = pytester.runpytest_subprocess("-p", "tests.leftover_processes", "-q")
    assert result.ret == 0, result.stdout.str()
    assert "processes left running" not in result.stdout.str()
