"""Serving benchmark (run by hand, never in tests): the Bento service against a naive server.

Both serve the same model under the same Locust profile (loadtests/locustfile.py), on loopback;
the service gets it as the Bento carries it (with the prepared ONNX INT8 graph; --as-is: not).
The servers (and the raw forward-limit measurement) run pinned to the same server cores, Locust
on cores of its own (on 2 cores: server core 1, Locust core 0), so neither steals the other's
time. The headline: requests/s per server core at p95 <= 100 ms as a share of the raw
forward-pass limit on the same cores (loadtests/forward.py), for the service (goal >= 70 %) and
the naive server beside it; a server that never meets p95 <= 100 ms is reported as such. Also
prints the peaks, cold start to /readyz, shadow on vs off p95, and each CPU fast path's
throughput. Writes serving.json, throughput and p95 plots against users (PNG) and, with
--flamegraph, a py-spy flame graph of the service under one Locust user into the report folder.

    make bench-serve            # or: python -m loadtests.benchmark --model models/candidate
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtests.run import run_locust
from loadtests.serving import bentoml_serve_command, free_port, running_server

P95_TARGET_MS = 100.0
SHARE_GOAL = 0.70  # of the raw forward limit, at p95 <= P95_TARGET_MS


def split_cores(cores: list[int]) -> tuple[list[int], list[int]]:
    """(server cores, load-generator cores): Locust gets the first core, the servers the rest;
    one core only cannot be split, so both share it (the figures then say so)."""
    cores = sorted(cores)
    if len(cores) < 2:
        return cores, cores
    return cores[1:], cores[:1]


def pinned(cmd: list[str], cores: list[int]) -> list[str]:
    """The command run on `cores` only (its child processes inherit the affinity)."""
    return ["taskset", "-c", ",".join(map(str, cores)), *cmd]


def headline(rps_at_p95: float | None, limit_rps: float, cores: int) -> dict[str, Any]:
    """Requests/s per server core at p95 <= target and its share of the raw forward limit on
    the same cores; None for both where the server never met the target (not a zero)."""
    per_core = None if rps_at_p95 is None else rps_at_p95 / cores
    share = None if rps_at_p95 is None or limit_rps <= 0 else rps_at_p95 / limit_rps
    return {"rps_per_core_at_p95": None if per_core is None else round(per_core, 2),
            "limit_rps_per_core": round(limit_rps / cores, 2),
            "share_of_limit": None if share is None else round(share, 3),
            "meets_goal": None if share is None else share >= SHARE_GOAL}


def describe_headline(name: str, figures: dict[str, Any], best_p95_ms: float) -> str:
    """One line for the headline figure, saying so when the target was never met."""
    if figures["share_of_limit"] is None:
        return (f"{name}: never reached p95 <= {P95_TARGET_MS:.0f} ms at any user count tried "
                f"(best p95 {best_p95_ms:.0f} ms): no requests/s at the target to report")
    goal = "" if name != "service" else (
        f"; goal >= {SHARE_GOAL:.0%}: {'met' if figures['meets_goal'] else 'not met'}")
    return (f"{name}: {figures['rps_per_core_at_p95']:.1f} req/s per core at p95 <= "
            f"{P95_TARGET_MS:.0f} ms = {figures['share_of_limit']:.0%} of the raw forward limit "
            f"({figures['limit_rps_per_core']:.1f} req/s per core){goal}")


def service_command(port: int) -> list[str]:
    return bentoml_serve_command("service.service:Moderation", port)


def naive_command(port: int) -> list[str]:
    return [sys.executable, "-m", "loadtests.naive_server", "--port", str(port)]


def sweep(name: str, command, env: dict[str, str], user_steps: list[int], step_s: int,
          holdout: Path, work: Path, cores: list[int],
          flamegraph: Path | None = None) -> dict[str, Any]:
    """Locust at each user count against the server pinned to `cores`; the best requests/s
    whose p95 stays within the target (None where no step met it)."""
    port = free_port()
    runs = []
    with running_server(pinned(command(port), cores), port, work / f"{name}.log", env=env) as \
            (base, proc, cold):
        run_locust(base, 2, 2, 4, work / f"{name}-warmup", holdout, 1000)  # not recorded
        if flamegraph is not None:
            profile_one_user(proc.pid, base, step_s, holdout, work, flamegraph)
        for users in user_steps:
            stats = run_locust(base, users, users, step_s, work / f"{name}-{users}u", holdout,
                               1000)
            runs.append({"users": users, **stats})
            print(f"  {name:<8} {users:>3} users: {stats['rps']:6.1f} req/s, "
                  f"p95 {stats['p95_ms']:6.0f} ms, errors {stats['failures']}", flush=True)
    ok = [r for r in runs if r["p95_ms"] <= P95_TARGET_MS and r["failures"] == 0]
    best = max((r["rps"] for r in ok), default=None)  # None: the target was never met
    peak = max((r["rps"] for r in runs if r["failures"] == 0), default=0.0)
    return {"name": name, "cold_start_s": round(cold, 2), "runs": runs, "rps_at_p95": best,
            "best_p95_ms": min((r["p95_ms"] for r in runs), default=float("nan")),
            "peak_rps": peak}


def profile_one_user(pid: int, base: str, seconds: int, holdout: Path, work: Path,
                     svg: Path) -> None:
    """py-spy flame graph of the server (and its worker processes) under one Locust user."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("  (no py-spy on PATH: flame graph skipped)", flush=True)
        return
    svg.parent.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen([py_spy, "record", "--subprocesses", "--idle", "-r", "100",
                                 "-d", str(seconds + 2), "-p", str(pid), "-o", str(svg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    run_locust(base, 1, 1, seconds, work / "profile-1u", holdout, 1000)
    recorder.wait(timeout=seconds + 60)
    print(f"  flame graph (1 user): {svg}", flush=True)


def raw_forward_limit(model: str, accel: str, threads: int, holdout: Path,
                      cores: list[int]) -> dict[str, Any]:
    """The model's forward-pass limit with the service's fast path and threads (own process),
    on the servers' cores."""
    env = {**os.environ, "MODERATION_ACCEL": accel}
    result = subprocess.run(pinned([sys.executable, "-m", "loadtests.forward", "--model", model,
                                    "--accel", accel, "--threads", str(threads), "--holdout",
                                    str(holdout)], cores),
                            env=env, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(result.stdout[result.stdout.index("{"):])


def plot_sweeps(sweeps: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Throughput and p95 against users, one line per server (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, label, file in [("rps", "requests/s", "throughput.png"),
                             ("p95_ms", "p95 latency (ms)", "p95.png")]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for sweep_result in sweeps:
            users = [r["users"] for r in sweep_result["runs"]]
            ax.plot(users, [r[key] for r in sweep_result["runs"]], marker="o",
                    label=sweep_result["name"])
        if key == "p95_ms":
            ax.axhline(P95_TARGET_MS, color="grey", linestyle="--", label="p95 target")
            ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("Locust users")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / file
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def fixed_load(name: str, env: dict[str, str], users: int, seconds: int, holdout: Path,
               work: Path, cores: list[int]) -> dict[str, Any]:
    port = free_port()
    with running_server(pinned(service_command(port), cores), port, work / f"{name}.log",
                        env=env) as \
            (base, _, cold):
        run_locust(base, 2, 2, 4, work / f"{name}-warmup", holdout, 1000)  # not recorded
        stats = run_locust(base, users, users, seconds, work / name, holdout, 1000)
    print(f"  {name:<14} {users} users: {stats['rps']:6.1f} req/s, p95 {stats['p95_ms']:5.0f} ms, "
          f"cold start {cold:.1f} s", flush=True)
    return {"name": name, "cold_start_s": round(cold, 2), **stats}


def as_in_bento(model_dir: Path, work: Path) -> Path:
    """The model as the Bento carries it: a copy with the graph `make bento` prepares."""
    from pipelines.runtime.metadata import ModelMetadata
    from service.onnx_runtime import prepare_onnx

    copy = Path(shutil.copytree(model_dir, work / "model"))
    metadata = ModelMetadata.load(copy)
    if metadata.kind == "transformer":
        prepare_onnx(copy, metadata)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/candidate"))
    parser.add_argument("--shadow-model", type=Path, default=None,
                        help="shadow model for the shadow on/off comparison (default: --model)")
    parser.add_argument("--holdout", type=Path, default=Path("data/holdout.csv"))
    parser.add_argument("--users", default="1,2,4,8,16,32")
    parser.add_argument("--step-seconds", type=int, default=12)
    parser.add_argument("--fixed-users", type=int, default=4)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="intra-op threads for both servers")
    parser.add_argument("--accel", default="auto", help="the service's serve.accel")
    parser.add_argument("--as-is", action="store_true",
                        help="serve --model unchanged, without the ONNX INT8 graph that "
                             "`make bento` prepares in the Bento's copy")
    parser.add_argument("--compare-accels", default="none,bf16,int8,onnx-int8",
                        help="fast paths compared at fixed load ('' = skip)")
    parser.add_argument("--flamegraph", action="store_true",
                        help="py-spy flame graph of the service under one user")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmark/serving.json"))
    args = parser.parse_args()
    steps = [int(u) for u in args.users.split(",")]
    work = Path(tempfile.mkdtemp(prefix="moderation-bench-"))
    report_dir = args.out.parent
    report_dir.mkdir(parents=True, exist_ok=True)
    model = str((args.model if args.as_is else as_in_bento(args.model, work)).resolve())
    base_env = {"MODERATION_MODEL_DIR": model, "MODEL_DIR": model,
                "MODERATION_TORCH_THREADS": str(args.torch_threads),
                "MODERATION_DB_URL": f"sqlite:///{work}/predictions.db"}
    service_env = {**base_env, "MODERATION_ACCEL": args.accel}
    server_cores, locust_cores = split_cores(list(os.sched_getaffinity(0)))
    os.sched_setaffinity(0, locust_cores)  # Locust, started from here, inherits it
    print(f"serving benchmark: model {model}; Locust steps {steps} users x {args.step_seconds} s; "
          f"service accel {args.accel}; servers on core(s) {server_cores}, Locust on "
          f"{locust_cores}{' (shared: one core only)' if server_cores == locust_cores else ''}; "
          f"work dir {work}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
          flush=True)

    limit = raw_forward_limit(model, args.accel, args.torch_threads, args.holdout, server_cores)
    print(f"  raw forward limit ({limit['accel']}, {limit['threads']} thread(s)): "
          f"{limit['texts_per_s']} texts/s at batch {limit['best_batch']} = "
          f"{limit['requests_per_s']} req/s of the profile "
          f"({limit['texts_per_request']} texts/request)", flush=True)
    naive = sweep("naive", naive_command, base_env, steps, args.step_seconds, args.holdout, work,
                  server_cores)
    bento = sweep("service", service_command, service_env, steps, args.step_seconds,
                  args.holdout, work, server_cores,
                  flamegraph=report_dir / "service-1user.svg" if args.flamegraph else None)
    cores = len(server_cores)
    figures = {s["name"]: headline(s["rps_at_p95"], limit["requests_per_s"], cores)
               for s in (naive, bento)}
    ratio = (bento["rps_at_p95"] / naive["rps_at_p95"]
             if bento["rps_at_p95"] is not None and naive["rps_at_p95"] else None)
    peak_ratio = bento["peak_rps"] / naive["peak_rps"] if naive["peak_rps"] else None
    plots = plot_sweeps([naive, bento], report_dir)

    print("shadow and fast paths at fixed load:", flush=True)
    shadow_dir = str((args.shadow_model or Path(model)).resolve())  # as served, by default
    variants = [("shadow-off", {}), ("shadow-on", {"MODERATION_SHADOW_MODEL_DIR": shadow_dir})]
    variants += [(f"accel-{a}", {"MODERATION_ACCEL": a})
                 for a in args.compare_accels.split(",") if a]
    fixed = {name: fixed_load(name, {**service_env, **extra}, args.fixed_users,
                              args.step_seconds, args.holdout, work, server_cores)
             for name, extra in variants}
    shadow_ratio = fixed["shadow-on"]["p95_ms"] / max(fixed["shadow-off"]["p95_ms"], 1e-9)
    result = {"model": model, "torch_threads": args.torch_threads, "accel": args.accel,
              "load_average": os.getloadavg(), "p95_target_ms": P95_TARGET_MS,
              "server_cores": server_cores, "locust_cores": locust_cores,
              "raw_forward_limit": limit, "naive": naive, "service": bento,
              "headline": figures, "share_goal": SHARE_GOAL,
              "throughput_ratio": ratio, "peak_ratio": peak_ratio, "fixed_load": fixed,
              "shadow_p95_ratio": round(shadow_ratio, 3), "plots": [str(p) for p in plots]}
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nheadline (servers on {cores} core(s), Locust apart):")
    for sweep_result in (bento, naive):
        print("  " + describe_headline(sweep_result["name"], figures[sweep_result["name"]],
                                       sweep_result["best_p95_ms"]))
    print(f"service / naive requests/s at p95 <= {P95_TARGET_MS:.0f} ms: "
          f"{'n/a (a server never met the target)' if ratio is None else f'{ratio:.2f}x'}")
    print(f"peak error-free requests/s: naive {naive['peak_rps']:.1f}, service "
          f"{bento['peak_rps']:.1f}, ratio "
          f"{'n/a' if peak_ratio is None else f'{peak_ratio:.2f}x'}")
    print(f"cold start to /readyz: service {bento['cold_start_s']:.1f} s, "
          f"naive {naive['cold_start_s']:.1f} s")
    print(f"shadow on/off p95: {fixed['shadow-on']['p95_ms']:.0f} / "
          f"{fixed['shadow-off']['p95_ms']:.0f} ms (x{shadow_ratio:.2f})")
    for name in (n for n in fixed if n.startswith("accel-")):
        print(f"{name}: {fixed[name]['rps']:.1f} req/s, p95 {fixed[name]['p95_ms']:.0f} ms")
    print(f"results: {args.out}; plots: {', '.join(str(p) for p in plots)}")


if __name__ == "__main__":
    main()
