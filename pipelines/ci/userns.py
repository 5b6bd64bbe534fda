"""Unprivileged user namespaces, which the pod-sandbox tests (bubblewrap) need: check, and with
root or passwordless sudo allow them (`make userns`; the ci workflow runs it before `make test`).

GitHub's hosted runners run jobs as the non-root `runner` user on Ubuntu 24.04, which sets
`kernel.apparmor_restrict_unprivileged_userns=1`: bubblewrap cannot set up its namespaces there
until that sysctl is 0. Other kernels gate the same thing with `kernel.unprivileged_userns_clone`
(Debian's older kernels) or `user.max_user_namespaces` (0 turns them off). Standard library only:
`make userns` runs before the virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

MAKE_TARGET = "make userns"
PROC_SYS = Path("/proc/sys")
# (sysctl, value that allows unprivileged user namespaces, is the current value a restriction?)
SYSCTLS = (
    ("kernel.apparmor_restrict_unprivileged_userns", "0", lambda v: v != "0"),
    ("kernel.unprivileged_userns_clone", "1", lambda v: v == "0"),
    ("user.max_user_namespaces", "65536", lambda v: v == "0"),
)


def probe() -> str | None:
    """None when this user can create the namespaces the pod sandbox uses (user + network, as
    bubblewrap does); otherwise why not (the tool's own error)."""
    bwrap = shutil.which("bwrap")
    cmd = ([bwrap, "--unshare-user", "--unshare-net", "--ro-bind", "/", "/", "true"] if bwrap
           else ["unshare", "--user", "--map-root-user", "--net", "--mount", "true"])
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        return f"{cmd[0]}: {e}"
    if result.returncode == 0:
        return None
    return (result.stderr or result.stdout).strip() or f"{cmd[0]} exited {result.returncode}"


def _read(name: str, proc_sys: Path) -> str | None:
    path = proc_sys / name.replace(".", "/")
    try:
        return path.read_text().strip()
    except OSError:
        return None


def restrictions(proc_sys: Path = PROC_SYS) -> list[tuple[str, str, str]]:
    """The sysctls that forbid unprivileged user namespaces here: (name, current, allowing)."""
    found = []
    for name, allowing, restricts in SYSCTLS:
        value = _read(name, proc_sys)
        if value is not None and restricts(value):
            found.append((name, value, allowing))
    return found


def problem(proc_sys: Path = PROC_SYS) -> str | None:
    """None when the pod sandbox can run as this user; otherwise what is wrong and the fix."""
    error = probe()
    if error is None:
        return None
    found = restrictions(proc_sys)
    cause = (", ".join(f"{name}={value}" for name, value, _ in found)
             or "no known sysctl explains it (a container without CAP_SYS_ADMIN?)")
    fix = "; ".join(f"sudo sysctl -w {name}={allowing}" for name, _, allowing in found)
    return (f"unprivileged user namespaces are not available to uid {os.getuid()} "
            f"({error}); cause: {cause}. The pod-sandbox tests (bubblewrap) need them: run "
            f"`{MAKE_TARGET}` (with root or passwordless sudo it sets "
            f"{fix or 'the sysctl'}; GitHub's Ubuntu 24.04 runners need "
            "kernel.apparmor_restrict_unprivileged_userns=0)")


def _privileged() -> list[str] | None:
    """The prefix that runs a command as root here, or None (neither root nor passwordless sudo)."""
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True,
                               check=False).returncode == 0:
        return [sudo, "-n"]
    return None


def allow(proc_sys: Path = PROC_SYS) -> str:
    """Make unprivileged user namespaces work (setting the sysctls with root or sudo), or raise
    SystemExit with the commands to run. Returns what it did."""
    if probe() is None:
        return "userns: unprivileged user namespaces work (bubblewrap can run the pod sandbox)"
    found = restrictions(proc_sys)
    message = problem(proc_sys) or ""
    prefix = _privileged()
    if not found or prefix is None:
        why = ("neither root nor passwordless sudo" if found and prefix is None
               else "nothing this target knows how to change")
        raise SystemExit(f"error: {message}\nuserns: {why}; run the sysctl commands above as "
                         "root, or make them permanent in /etc/sysctl.d/")
    for name, _, allowing in found:
        subprocess.run([*prefix, "sysctl", "-w", f"{name}={allowing}"], check=True)
    still = probe()
    if still is not None:
        raise SystemExit(f"error: unprivileged user namespaces still fail after setting "
                         f"{', '.join(n for n, _, _ in found)}: {still}")
    return ("userns: set " + ", ".join(f"{n}={a}" for n, _, a in found)
            + "; unprivileged user namespaces work now")


def main(argv: list[str]) -> int:
    """`--check`: report only (exit 1 when unavailable); otherwise allow them where possible."""
    if "--check" in argv:
        message = problem()
        print(f"error: {message}" if message else
              "userns: unprivileged user namespaces work", file=sys.stderr if message else None)
        return 1 if message else 0
    print(allow())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
