"""The user-namespace check behind `make userns`: which sysctl forbids them, and the fix named."""

from __future__ import annotations

import pytest

from pipelines.ci import userns


def _proc_sys(tmp_path, **values: str):
    for name, value in values.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return tmp_path


@pytest.mark.parametrize(("values", "expected"), [
    ({"kernel__apparmor_restrict_unprivileged_userns": "1",
      "user__max_user_namespaces": "63000"},
     [("kernel.apparmor_restrict_unprivileged_userns", "1", "0")]),
    ({"kernel__unprivileged_userns_clone": "0"},
     [("kernel.unprivileged_userns_clone", "0", "1")]),
    ({"user__max_user_namespaces": "0"}, [("user.max_user_namespaces", "0", "65536")]),
    ({"kernel__apparmor_restrict_unprivileged_userns": "0",
      "kernel__unprivileged_userns_clone": "1", "user__max_user_namespaces": "63000"}, []),
], ids=["ubuntu-24.04-runner", "old-debian", "limit-zero", "allowed"])
def test_the_sysctl_that_forbids_user_namespaces_is_named_with_its_allowing_value(
        tmp_path, values, expected):
    assert userns.restrictions(_proc_sys(tmp_path, **values)) == expected


def test_the_problem_names_the_cause_and_make_userns(tmp_path, monkeypatch):
    monkeypatch.setattr(userns, "probe", lambda: "bwrap: setting up uid map: Permission denied")
    proc = _proc_sys(tmp_path, kernel__apparmor_restrict_unprivileged_userns="1")
    message = userns.problem(proc)
    assert "cause: kernel.apparmor_restrict_unprivileged_userns=1" in message
    assert "run `make userns`" in message
    assert "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in message


def test_allow_without_root_or_sudo_exits_with_the_commands(tmp_path, monkeypatch):
    monkeypatch.setattr(userns, "probe", lambda: "bwrap: setting up uid map: Permission denied")
    monkeypatch.setattr(userns, "_privileged", lambda: None)
    proc = _proc_sys(tmp_path, kernel__apparmor_restrict_unprivileged_userns="1")
    with pytest.raises(SystemExit, match="neither root nor passwordless sudo"):
        userns.allow(proc)


def test_where_user_namespaces_work_nothing_is_changed(monkeypatch):
    monkeypatch.setattr(userns, "probe", lambda: None)
    monkeypatch.setattr(userns, "_privileged", lambda: pytest.fail("asked for root"))
    assert "work" in userns.allow()
