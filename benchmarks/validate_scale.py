"""Time and peak memory of the validate stage on training data 10x and 100x the bundled size
(run by hand; figures in docs/data.md).

    .venv/bin/python benchmarks/validate_scale.py [--scales 1 10 100] [--ref REV --ref-scales 10]

In a throwaway copy of the repository (data and production model pulled), train.csv is the
bundled split repeated `scale` times; each copy after the first gets a suffix on every text
(" v<copy>") and id, so no row duplicates another and every added row is new to production's
data version: the label_noise rule has `scale - 1` bundled splits of changed rows to judge,
which is its worst case. Each scale runs `python -m pipelines.stages.validate` twice, with the
rule on and off, each in its own process; peak memory is that process's maximum resident set
(getrusage of the child), time is wall and CPU (CPU time is the steadier figure on a shared
machine). --ref also measures the validate stage of an older commit (e.g. the one before
streaming) on the same generated files, for a ratio taken in one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def sh(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env(cwd), capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        sys.exit(f"{cmd} failed:\n{result.stdout}\n{result.stderr}")
    return result


def env(cwd: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(cwd), HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def copy_repo(repo: Path, ref: str | None = None) -> None:
    """The working tree (or the commit `ref`) with its data and production model pulled."""
    repo.mkdir(parents=True)
    if ref:
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    else:
        listed = sh(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                    ROOT)
        for rel in filter(None, listed.stdout.split("\0")):
            if (ROOT / rel).is_file():
                (repo / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, repo / rel)
    sh(["git", "init", "-q"], repo)
    sh([sys.executable, "-m", "pipelines", "data", "pull"], repo)
    sh(["dvc", "pull", "--quiet", "models/production.dvc"], repo)


def write_scaled(bundled: Path, out: Path, scale: int) -> int:
    """The bundled split `scale` times over, streamed (the generator holds one row at a time)."""
    rows = 0
    with bundled.open(encoding="utf-8", newline="") as src, \
            out.open("w", encoding="utf-8", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
        header = next(reader)
        body = list(reader)
        writer.writerow(header)
        id_col, text_col = header.index("id"), header.index("text")
        for copy in range(scale):
            for record in body:
                if copy:
                    record = list(record)
                    record[id_col] = f"{record[id_col]}-v{copy}"
                    record[text_col] = f"{record[text_col]} v{copy}"
                writer.writerow(record)
                rows += 1
    return rows


def set_rule(repo: Path, level: str) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["validate"]["severity"]["label_noise"] = level
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def measure(repo: Path) -> dict:
    """One validate run in its own process: wall and CPU seconds, peak RSS, its report."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "pipelines.stages.validate", "--report",
                              "reports/bench.json"], cwd=repo, env=env(repo),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    report = json.loads((repo / "reports/bench.json").read_text())
    return {"wall_s": round(time.monotonic() - started, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_mib": round(usage.ru_maxrss / 1024),  # KiB on Linux
            "exit": child.returncode, "findings": report["by_rule"],
            "label_noise": report["label_noise"], "tail": output.strip().splitlines()[-1:]}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--ref", help="also measure validate at this commit")
    parser.add_argument("--ref-scales", type=int, nargs="+", default=[10])
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores visible; load average "
          f"{os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="validate-scale-") as tmp:
        repo = Path(tmp) / "repo"
        copy_repo(repo)
        bundled = Path(tmp) / "bundled.csv"
        shutil.copy2(repo / "data/train.csv", bundled)
        print("| code | scale | rows | MB | label_noise | wall s | CPU s | peak MiB | changed rows "
              "(scored) | estimate |")
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|---|")
        runs = [("this tree", repo, scale) for scale in args.scales]
        if args.ref:
            old = Path(tmp) / "ref"
            copy_repo(old, args.ref)
            runs += [(args.ref[:12], old, scale) for scale in args.ref_scales]
        for name, repo, scale in runs:
            rows = write_scaled(bundled, repo / "data/train.csv", scale)
            size = (repo / "data/train.csv").stat().st_size / 1e6
            for level in ("error", "off"):
                set_rule(repo, level)
                found = measure(repo)
                noise = found["label_noise"] or {}
                sampled = (noise.get("sampled") or {}).get("changed_rows")
                changed = (f"{noise['changed_rows']} ({sampled or noise['changed_rows']})"
                           if noise.get("scored") else "–")
                estimate = noise.get("estimate") or {}
                shown = (f"{100 * estimate['share']:.1f} % [{100 * estimate['low']:.1f}, "
                         f"{100 * estimate['high']:.1f}]" if estimate else "–")
                rule = "on" if level != "off" else "off"
                print(f"| {name} | {scale}× | {rows} | {size:.0f} | {rule} "
                      f"| {found['wall_s']} | {found['cpu_s']} | {found['peak_mib']} | "
                      f"{changed} | {shown} |", flush=True)
                if found["exit"] != 0:
                    print(f"  (exit {found['exit']}: {found['findings']}; {found['tail']})")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
