"""Run a command the way a GitHub hosted runner runs a job step: as a non-root user (with
passwordless sudo, like `runner`), in a private mount namespace; with `--restrict-userns`, in a
user namespace whose `user.max_user_namespaces` is 0, which forbids unprivileged user namespaces
the way Ubuntu 24.04's `kernel.apparmor_restrict_unprivileged_userns=1` does (this machine has no
AppArmor). Root only (or through sudo); standard library only.

    as_runner.py USER [--restrict-userns] -- COMMAND...

Inside the user namespace uid 0 is the real root (the map is the identity), so `sudo` still works
there, and raising the limit with `sudo sysctl -w user.max_user_namespaces=...` is the fix the
runner's user can apply, as `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` is on
GitHub. The Python interpreter the venv links to, and the venv, are made reachable for the user
when they live under a folder only root may enter (this machine's /root/.pyenv; a checkout made
in `mktemp -d` or a private home; a runner's interpreter is in /opt/hostedtoolcache).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
ID_MAP = "0 0 65536\n"


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), f"unshare({flags:#x}) failed")


def _hidden_ancestor(path: Path) -> Path | None:
    """The outermost folder above `path` that others may not enter, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def _expose_interpreter() -> None:
    """Bind the interpreter's installation and the venv back under a world-enterable tmpfs over
    each folder that hides them (private mount namespace: the host sees nothing)."""
    paths = sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()})
    hidden = {parent for path in paths if (parent := _hidden_ancestor(path)) is not None}
    if not hidden:
        return
    staged = []
    for path in paths:
        stage = tempfile.mkdtemp(prefix="as-runner-")
        subprocess.run(["mount", "--bind", str(path), stage], check=True)
        staged.append((path, stage))
    for folder in hidden:
        if not any(other in folder.parents for other in hidden):  # nested: covered already
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(folder)],
                           check=True)
    for path, stage in staged:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--move", stage, str(path)], check=True)


def _child(user: str, restrict: bool, command: list[str]) -> None:
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    if restrict:
        Path("/proc/sys/user/max_user_namespaces").write_text("0\n")
    _expose_interpreter()
    entry = pwd.getpwnam(user)
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    env = {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user,
           "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
    os.execvpe(command[0], command, env)


def main(argv: list[str]) -> int:
    user, rest = argv[0], argv[1:]
    restrict = "--restrict-userns" in rest[:rest.index("--")]
    command = rest[rest.index("--") + 1:]
    if not restrict:
        _unshare(CLONE_NEWNS)
        _child(user, restrict, command)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        _unshare(CLONE_NEWUSER | CLONE_NEWNS)
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        # the maps are written: this process is root of its user namespace
        _child(user, restrict, command)
    os.close(ready_w)
    os.close(go_r)
    os.read(ready_r, 1)
    for name in ("uid_map", "gid_map"):
        Path(f"/proc/{pid}/{name}").write_text(ID_MAP)
    os.write(go_w, b"1")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
