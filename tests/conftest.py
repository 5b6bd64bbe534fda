"""Shared fixtures: throwaway copies of this repository, and one smoke-trained copy per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SMOKE_PROFILE = "profiles/smoke.yaml"
# The session fails when a test leaves a process running (children included).
pytest_plugins = ["tests.leftover_processes"]

# The fast tier (`make test-fast`) is every test not marked slow; `make test` runs all. A test is
# slow when it uses one of these fixtures (each trains a model, starts a server, database or
# browser, or validates a private copy of the manifests), runs on the PostgreSQL side of a
# fixture parametrised over both databases (`db_url`, which asks for `postgres_url` only then),
# or its node id starts with an entry of SLOW_TESTS; so a new test of that kind joins
# the slow tier without anyone remembering to mark it (docs/testing.md).
SLOW_FIXTURES = frozenset({
    "smoke_repo",  # the smoke DVC pipeline, run once per session
    "hate_fork",  # the smoke DVC pipeline on a fork for another task (tests/pipeline)
    "server",  # the smoke model served by BentoML (tests/service/conftest.py)
    "workspace",  # models trained for the compare scenarios (tests/compare/conftest.py)
    "postgres_server", "postgres_cluster", "postgres_url",  # throwaway PostgreSQL clusters
    "s3_server",  # moto's S3 server for the DVC remote and the act scenarios
    "review_ui",  # the review UI as a process of its own (and Chromium, for the browser tests)
    "k8s_copy",  # kubectl kustomize and kubernetes-validate again on an edited copy of k8s/
})
# Slow without one of those fixtures: a module, or one test of it, each with its reason.
SLOW_TESTS = {
    "tests/e2e/test_hosted_runner.py": "make userns and the pod tests as a non-root sudo user",
    "tests/k8s/test_argocd.py": "renders and syncs the overlays through every canary step",
    "tests/k8s/test_platform.py": "renders the platform with the overlays again for each case",
    "tests/pipeline/test_label_noise.py": "scores carved data versions with both scorers",
    "tests/pipeline/test_data.py::test_edited_data_not_added_to_dvc_names_the_cause_and_both_ways_"
    "out": "dvc status and data pull on an edited copy",
    "tests/pipeline/test_validate.py::test_rule_error_stops_pipeline_naming_file_row_and_rule":
    "dvc repro on a copy",
    # validate's label_noise rule scores rows new since production's data version with the
    # production model and a 5-fold TF-IDF model: seconds for each of these edited copies
    **dict.fromkeys([f"tests/pipeline/test_validate.py::{test}" for test in (
        "test_rule_error_fails_validation_naming_file_row_and_rule[conflicting_labels]",
        "test_rule_error_fails_validation_naming_file_row_and_rule[holdout_leak]",
        "test_rule_error_fails_validation_naming_file_row_and_rule[too_long]",
        "test_findings_name_the_file_line_after_cells_with_quoted_newlines",
        "test_control_characters_in_a_text_are_an_error_with_file_and_line",
        "test_streaming_in_small_chunks_finds_exactly_what_one_chunk_finds")],
        "label_noise scores the edited rows (production model, 5-fold TF-IDF)"),
    "tests/pipeline/test_params.py::test_pipeline_stops_on_bad_params_before_training":
    "dvc repro on a copy",
    "tests/pipeline/test_train.py::test_decision_": "fits TF-IDF and scores the dev split",
    "tests/pipeline/test_train_speed.py::test_real_probe_on_the_smoke_backbone_":
    "loads the smoke backbone and times training steps in fp32 and bf16",
    "tests/pipeline/test_train_speed.py::test_openmp_waits_passively_":
    "three Python processes, one importing torch",
    "tests/compare/test_production_pointer.py::test_a_past_data_version_is_read_through_dvc_":
    "dvc init, add and push as processes",
    "tests/test_leftover_processes.py": "runs pytest sessions as processes",
    "tests/k8s/test_pod_sandbox.py": "pods as processes in bubblewrap (the service, the review UI)",
    "tests/pipeline/test_backbone.py::test_the_train_command_exits_2_naming_the_missing_package":
    "the train stage imports torch and transformers",
    "tests/test_drift.py::test_the_verdict_uses_the_distance_evidentlys_report_shows":
    "imports Evidently and renders its report",
    # A command line as a process (`python -m pipelines ...`, a few seconds of interpreter start
    # and imports each): the process boundary, kept once per command group; the fast tier runs
    # the same commands in-process (tests.conftest.pipelines_cli).
    **dict.fromkeys([
        "tests/test_rollout.py::test_apply_without_cluster_settings_says_which_to_set",
        "tests/pipeline/test_behaviour_checks.py::test_check_params_exits_2_naming_the_missing_",
        "tests/pipeline/test_validate.py::test_bundled_data_passes_cleanly",
        "tests/pipeline/test_data.py::test_fresh_copy_resolves_data_from_the_in_repo_remote",
        "tests/feedback/test_review_limits.py::test_the_review_ui_does_not_start_with_a_one_",
        "tests/feedback/test_review_api.py::test_review_ui_refuses_to_start_without_a_token",
        "tests/test_retrain_steps.py::test_propose_without_a_comparison_names_the_missing_file",
        "tests/test_drift.py::test_a_bad_database_url_is_named",
        "tests/test_pr_checks.py::test_preflight_refuses_the_in_repo_remote_in_seconds_",
        "tests/test_image_build.py::test_an_unknown_bento_is_a_usage_error_naming_it",
    ], "`python -m pipelines` as a process"),
    "tests/test_drift.py::test_served_holdout_traffic_": "classifies the holdout, drift reports",
    "tests/test_drift.py::test_drifted_inputs_open_one_issue_": "drift reports on logged traffic",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tier (see SLOW_FIXTURES); `-m "not slow"` then selects the fast one."""
    for item in items:
        params = getattr(item, "callspec", None)
        if (SLOW_FIXTURES.intersection(item.fixturenames)
                or item.nodeid.startswith(tuple(SLOW_TESTS))
                or (params is not None and "postgresql" in params.params.values())):
            item.add_marker(pytest.mark.slow)


def repo_env(repo: Path, **extra: str) -> dict[str, str]:
    """Environment for commands run inside a copy: its own code first, offline, no telemetry."""
    env = dict(os.environ)
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(repo),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1",
               TOKENIZERS_PARALLELISM="false", GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="t@t")
    env.update(extra)
    return env


def run(cmd: list[str] | str, cwd: Path, check: bool = True, timeout: float = 600,
        **env: str) -> subprocess.CompletedProcess:
    """Run a command in a repository copy and capture its output (shown when check fails)."""
    result = subprocess.run(cmd, cwd=cwd, env=repo_env(cwd, **env), capture_output=True,
                            text=True, timeout=timeout, shell=isinstance(cmd, str), check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                             f"stderr:\n{result.stderr}")
    return result


def pipelines_cli(args: list[str], cwd: Path, check: bool = True,
              **env: str) -> subprocess.CompletedProcess:
    """`python -m pipelines ARGS` as `run` runs it (in cwd, with repo_env and env), but inside
    this process: the command's logic, exit code and output without paying the interpreter's
    start and the stack's imports (torch, sklearn, DVC) again. An exception the command does not
    turn into an exit code fails the test (the process would print a traceback). The test of a
    process boundary itself (`python -m ...`, dvc.yaml's scripts) keeps `run`."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        os.chdir(cwd)
        result = CliRunner().invoke(app, args, env=repo_env(Path(cwd), **env),
                                    prog_name="python -m pipelines")
    finally:  # a command may set variables (BENTOML_HOME) or leave cwd: neither outlives it
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    completed = subprocess.CompletedProcess(["python", "-m", "pipelines", *args],
                                            result.exit_code, result.stdout, result.stderr)
    if check and completed.returncode != 0:
        raise AssertionError(f"{completed.args} exited {completed.returncode}\nstdout:\n"
                             f"{completed.stdout}\nstderr:\n{completed.stderr}")
    return completed


def copy_repo(dest: Path) -> Path:
    """Copy the working tree (tracked and untracked, not ignored) into dest as a fresh git repo."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run("git init -q && git add -A && git commit -qm 'test copy'", dest)
    return dest


@pytest.fixture(scope="session")
def base_repo(tmp_path_factory) -> Path:
    """A copy of the repository with data.dvc resolved into data/ (read-only for tests)."""
    repo = copy_repo(tmp_path_factory.mktemp("base") / "repo")
    pipelines_cli(["data", "pull"], repo)
    if (repo / "models/production.dvc").exists():  # what `make production` does
        run(["dvc", "pull", "--quiet", "models/production.dvc"], repo)
    return repo


@pytest.fixture
def fresh_repo(base_repo, tmp_path) -> Path:
    """A private, writable copy of base_repo for one test."""
    return Path(shutil.copytree(base_repo, tmp_path / "repo", symlinks=True))


@pytest.fixture(scope="session")
def smoke_repo(base_repo, tmp_path_factory) -> Path:
    """A copy on the smoke profile with the whole DVC pipeline run (read-only for tests)."""
    repo = Path(shutil.copytree(base_repo, tmp_path_factory.mktemp("smoke") / "repo",
                                symlinks=True))
    run([sys.executable, "-m", "pipelines", "profile", SMOKE_PROFILE], repo)
    run(["dvc", "repro"], repo)
    return repo


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run `apt-get install postgresql` "
                    "(`make system-packages` does this)")
    return found[-1].parent


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 that a test may stop and start again (same
    port, same data), as a database outage would."""

    def __init__(self) -> None:
        self.bin_dir = _pg_bin()
        # Outside pytest's private (0700) temp tree, so the postgres user can reach it when root.
        self.base = Path(tempfile.mkdtemp(prefix="moderation-pg-"))
        self.data, self.sock = self.base / "data", self.base / "sock"
        self.sock.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sock, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"
        self._pg([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8"])

    def _pg(self, cmd: list[str]) -> None:
        result = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True)
        assert result.returncode == 0, f"{cmd[0]} failed: {result.stdout}{result.stderr}"

    def start(self) -> None:
        self._pg([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.base / "server.log"), "-w", "-t", "30", "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.sock}", "start"])

    def stop(self) -> None:
        self._pg([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                  "stop"])

    def remove(self) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                        "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh, empty database on this cluster, as a postgresql:// URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields its base URL (no database name)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.remove()


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running cluster of this test's own, which it may stop and start (an outage)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the throwaway cluster, as a postgresql:// URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1; yields its endpoint URL."""
    import urllib.request

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **S3_ENV})
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                return True
        except OSError:
            return proc.poll() is not None  # stop waiting once it died
    try:
        wait_until(answers, timeout=60)
        assert proc.poll() is None, f"moto_server exited: {log.read_text()}"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def s3_remote(repo: Path, endpoint: str, bucket: str) -> None:
    """Create bucket on the S3 server and make it repo's default DVC remote (committed config,
    as a fork with an S3-compatible store commits it)."""
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in S3_ENV.items()
                                                 if k != "AWS_DEFAULT_REGION"},
                 region_name=S3_ENV["AWS_DEFAULT_REGION"]).create_bucket(Bucket=bucket)
    run(["dvc", "remote", "add", "-d", "-f", "origin", f"s3://{bucket}/dvc"], repo)
    run(["dvc", "remote", "modify", "origin", "endpointurl", endpoint], repo)
