"""Serving benchmark (run by hand, never in tests): the Bento service against a naive server.

Both serve the same model under the same Locust profile (loadtests/locustfile.py), on loopback.
Prints requests/s at p95 <= 100 ms for each and their ratio, cold start to /readyz, shadow on vs
off p95, and the CPU speed-ups' throughput.

    make bench-serve            # or: python -m loadtests.benchmark --model models/candidate
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtests.run import run_locust
from loadtests.serving import bentoml_serve_command, free_port, running_server

P95_TARGET_MS = 100.0


def service_command(port: int) -> list[str]:
    return bentoml_serve_command("service.service:Moderation", port)


def naive_command(port: int) -> list[str]:
    return [sys.executable, "-m", "loadtests.naive_server", "--port", str(port)]


def sweep(name: str, command, env: dict[str, str], user_steps: list[int], step_s: int,
          holdout: Path, work: Path) -> dict[str, Any]:
    """Locust at each user count; best requests/s whose p95 stays within the target."""
    port = free_port()
    runs = []
    with running_server(command(port), port, work / f"{name}.log", env=env) as (base, _, cold):
        run_locust(base, 2, 2, 4, work / f"{name}-warmup", holdout, 1000)  # not recorded
        for users in user_steps:
            stats = run_locust(base, users, users, step_s, work / f"{name}-{users}u", holdout,
                               1000)
            runs.append({"users": users, **stats})
            print(f"  {name:<8} {users:>3} users: {stats['rps']:6.1f} req/s, "
                  f"p95 {stats['p95_ms']:6.0f} ms, errors {stats['failures']}", flush=True)
    ok = [r for r in runs if r["p95_ms"] <= P95_TARGET_MS and r["failures"] == 0]
    best = max((r["rps"] for r in ok), default=0.0)
    peak = max((r["rps"] for r in runs if r["failures"] == 0), default=0.0)
    return {"name": name, "cold_start_s": round(cold, 2), "runs": runs, "rps_at_p95": best,
            "peak_rps": peak}


def fixed_load(name: str, env: dict[str, str], users: int, seconds: int, holdout: Path,
               work: Path) -> dict[str, Any]:
    port = free_port()
    with running_server(service_command(port), port, work / f"{name}.log", env=env) as \
            (base, _, cold):
        run_locust(base, 2, 2, 4, work / f"{name}-warmup", holdout, 1000)  # not recorded
        stats = run_locust(base, users, users, seconds, work / name, holdout, 1000)
    print(f"  {name:<14} {users} users: {stats['rps']:6.1f} req/s, p95 {stats['p95_ms']:5.0f} ms, "
          f"cold start {cold:.1f} s", flush=True)
    return {"name": name, "cold_start_s": round(cold, 2), **stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/candidate"))
    parser.add_argument("--shadow-model", type=Path, default=None,
                        help="shadow model for the shadow on/off comparison (default: --model)")
    parser.add_argument("--holdout", type=Path, default=Path("data/holdout.csv"))
    parser.add_argument("--users", default="1,2,4,8,16")
    parser.add_argument("--step-seconds", type=int, default=12)
    parser.add_argument("--fixed-users", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmark/serving.json"))
    args = parser.parse_args()
    steps = [int(u) for u in args.users.split(",")]
    work = Path(tempfile.mkdtemp(prefix="moderation-bench-"))
    model = str(args.model.resolve())
    base_env = {"MODERATION_MODEL_DIR": model, "MODEL_DIR": model,
                "MODERATION_DB_URL": f"sqlite:///{work}/predictions.db"}
    print(f"serving benchmark: model {model}; Locust steps {steps} users x {args.step_seconds} s; "
          f"work dir {work}", flush=True)

    naive = sweep("naive", naive_command, base_env, steps, args.step_seconds, args.holdout, work)
    bento = sweep("service", service_command, base_env, steps, args.step_seconds, args.holdout,
                  work)
    ratio = bento["rps_at_p95"] / naive["rps_at_p95"] if naive["rps_at_p95"] else None
    peak_ratio = bento["peak_rps"] / naive["peak_rps"] if naive["peak_rps"] else None

    print("shadow and speed-ups at fixed load:", flush=True)
    shadow_dir = str((args.shadow_model or args.model).resolve())
    fixed = {name: fixed_load(name, {**base_env, **extra}, args.fixed_users, args.step_seconds,
                              args.holdout, work)
             for name, extra in [("shadow-off", {}),
                                 ("shadow-on", {"MODERATION_SHADOW_MODEL_DIR": shadow_dir}),
                                 ("accel-int8", {"MODERATION_ACCEL": "int8"}),
                                 ("accel-onnx", {"MODERATION_ACCEL": "onnx"})]}
    shadow_ratio = fixed["shadow-on"]["p95_ms"] / max(fixed["shadow-off"]["p95_ms"], 1e-9)
    result = {"model": model, "p95_target_ms": P95_TARGET_MS, "naive": naive, "service": bento,
              "throughput_ratio": ratio, "peak_ratio": peak_ratio, "fixed_load": fixed,
              "shadow_p95_ratio": round(shadow_ratio, 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nrequests/s at p95 <= {P95_TARGET_MS:.0f} ms: naive {naive['rps_at_p95']:.1f}, "
          f"service {bento['rps_at_p95']:.1f}, ratio "
          f"{'n/a (naive never met the target)' if ratio is None else f'{ratio:.2f}x'}")
    print(f"peak error-free requests/s: naive {naive['peak_rps']:.1f}, service "
          f"{bento['peak_rps']:.1f}, ratio "
          f"{'n/a' if peak_ratio is None else f'{peak_ratio:.2f}x'}")
    print(f"cold start to /readyz: service {bento['cold_start_s']:.1f} s, "
          f"naive {naive['cold_start_s']:.1f} s")
    print(f"shadow on/off p95: {fixed['shadow-on']['p95_ms']:.0f} / "
          f"{fixed['shadow-off']['p95_ms']:.0f} ms (x{shadow_ratio:.2f})")
    for name in ("accel-int8", "accel-onnx"):
        print(f"{name}: {fixed[name]['rps']:.1f} req/s, p95 {fixed[name]['p95_ms']:.0f} ms "
              f"(fp32 {fixed['shadow-off']['rps']:.1f} req/s, p95 "
              f"{fixed['shadow-off']['p95_ms']:.0f} ms)")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
