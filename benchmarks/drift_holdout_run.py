"""The in-distribution drift run: serve a model with a fresh SQLite log, send every holdout text
through /classify in requests of 8, stop the service with SIGTERM (the log is flushed), then run
`drift sample` and `drift report` as the drift workflow does. Expected verdict: no drift.

Run by hand from the repository root after `make data production` (loopback only):
    python benchmarks/drift_holdout_run.py [--model models/production] [--out /tmp/drift-holdout]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from loadtests.serving import bentoml_serve_command, free_port, running_server
from pipelines.core.data import read_split
from pipelines.runtime.params import load_params


def send_in_requests_of_8(base: str, texts: list[str]) -> None:
    for start in range(0, len(texts), 8):
        request = urllib.request.Request(
            base + "/classify", data=json.dumps({"texts": texts[start:start + 8]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            resp.read()


def pipelines(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True,
                            text=True, check=True)
    return result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/production"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="drift-holdout-"))
    out.mkdir(parents=True, exist_ok=True)
    database = out / "predictions.db"
    database.unlink(missing_ok=True)
    db_url = f"sqlite:///{database.resolve()}"
    params = load_params("params.yaml")
    texts = list(read_split(params.data.holdout_file).text)

    port = free_port()
    env = {**os.environ, "MODERATION_MODEL_DIR": str(args.model.resolve()),
           "MODERATION_DB_URL": db_url, "BENTOML_HOME": str(out / "bentoml-home")}
    with running_server(bentoml_serve_command("service.service:Moderation", port), port,
                        out / "server.log", env=env) as (base, _, _):
        send_in_requests_of_8(base, texts)
    # running_server sent SIGTERM and waited: the prediction log is flushed.
    logged = sqlite3.connect(database).execute("SELECT count(*) FROM predictions").fetchone()[0]
    print(f"sent {len(texts)} holdout texts in requests of 8; {logged} rows logged")
    print(pipelines("drift", "sample", "--db-url", db_url, "--out", str(out / "current.csv")))
    print(pipelines("drift", "report", "--current", str(out / "current.csv"), "--out", str(out),
                    "--model", str(args.model)))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    columns = {**summary["input"]["columns"], **summary["prediction"].get("columns", {})}
    largest = max(columns, key=lambda c: columns[c]["value"])
    print(f"largest effect: {largest} {columns[largest]['value']} (minimum "
          f"{columns[largest]['threshold']}); summary {out / 'summary.md'}")


if __name__ == "__main__":
    main()
