"""`make loadtest`: serve the Bento on loopback, run Locust headless, apply the gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer

from loadtests.gate import judge, read_locust_stats, read_production_record, write_summary
from loadtests.serving import bentoml_serve_command, free_port, running_server
from pipelines.core.cli import ParamsOpt
from pipelines.runtime.errors import PipelineError
from pipelines.runtime.params import PARAMS_FILE, Params, load_params

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def run_locust(host: str, users: int, spawn_rate: float, duration_s: int, out_dir: Path,
               holdout: Path, max_chars: int) -> dict[str, float]:
    """Headless Locust against a loopback host; CSV and HTML under out_dir; aggregate stats."""
    if urlparse(host).hostname not in LOOPBACK:
        raise ValueError(f"load tests only target loopback, not {host}")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
           "-u", str(users), "-r", str(spawn_rate), "-t", f"{duration_s}s", "--stop-timeout", "5",
           "--csv", str(out_dir / "locust"), "--html", str(out_dir / "locust.html"),
           "--only-summary", "--exit-code-on-error", "0"]
    # The locustfile imports loadtests.traffic: the repository root must be importable.
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "LOADTEST_HOLDOUT": str(holdout), "LOADTEST_MAX_CHARS": str(max_chars),
           "PYTHONPATH": pythonpath}
    print(f"loadtest: {users} users for {duration_s} s against {host}", flush=True)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True,
                            timeout=duration_s + 90)
    (out_dir / "locust.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        raise RuntimeError(f"locust exited {result.returncode}; see {out_dir / 'locust.log'}")
    return read_locust_stats(out_dir / "locust_stats.csv")


def served_model_version(base: str) -> str:
    """The X-Model-Version a running service answers with."""
    req = urllib.request.Request(base + "/classify", json.dumps({"texts": ["hello"]}).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.headers["X-Model-Version"]


def run_loadtest(params: Params, bento: str, out_dir: Path, production_record: Path | None,
                 host: str | None = None) -> dict[str, Any]:
    """Load-test `bento` (or a running `host`) and write summary.json / summary.md."""
    limits = params.loadtest
    holdout = Path(params.data.holdout_file)
    locust_args = (limits.users, limits.spawn_rate, limits.duration_s, out_dir, holdout,
                   params.serve.max_chars)
    if host is not None:
        version = served_model_version(host)
        stats = run_locust(host, *locust_args)
    else:
        port = free_port()
        # A SIGTERM drain answers for its whole budget; nothing connects after Locust stops.
        env = {"MODERATION_DB_URL": f"sqlite:///{out_dir.resolve()}/predictions.db",
               "MODERATION_DRAIN_TIMEOUT_S": "2"}
        with running_server(bentoml_serve_command(bento, port), port, out_dir / "server.log",
                            env=env) as (base, _, _):
            version = served_model_version(base)
            stats = run_locust(base, *locust_args)
    production = read_production_record(production_record)
    summary = {"bento": bento, "model_version": version, "users": limits.users,
               "duration_s": limits.duration_s, "stats": stats,
               "verdict": judge(stats, limits, production)}
    json_path, md_path = write_summary(out_dir, summary)
    print(md_path.read_text(encoding="utf-8"))
    print(f"loadtest: reports in {out_dir} ({json_path.name}, {md_path.name}, locust.html, "
          "locust_stats.csv)")
    return summary


def command(bento_tag: Annotated[str, typer.Option("--bento")] = "moderation:latest",
            host: Annotated[str | None, typer.Option(help="Test this running service")] = None,
            out: Path = Path("reports/loadtest"),
            production_record: Path = Path("models/production-loadtest.json"),
            params: ParamsOpt = PARAMS_FILE) -> None:
    """Serve the Bento on loopback, run Locust headless and apply the load-test gate."""
    summary = run_loadtest(load_params(params), bento_tag, out, production_record, host)
    if not summary["verdict"]["passed"]:
        raise PipelineError(f"load-test gate failed; see {out / 'summary.md'}")
