"""Training steps/s alone and beside a CPU-bound neighbour, per thread setting, in one run
(by hand, not in tests).

    .venv/bin/python benchmarks/train_shared_cores.py --seconds 15

For each neighbour (none; one busy-loop process unpinned; the same pinned to the last usable
core) and each thread setting (torch's default of one thread per core; the same with
OMP_WAIT_POLICY=PASSIVE; one thread; the train stage's ThreadGovernor, which follows the free
cores), a fresh process trains the configured backbone on one real batch (forward, backward,
AdamW step, the stage's precision) for --seconds and reports steps/s. Every neighbour is
killed before the next run. Prints a table of steps/s and each setting's ratio to its own
idle figure, with the load average, and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.core.params import PARAMS_FILE

SETTINGS = {  # name: (extra environment, thread setting for the child)
    "default": ({}, "default"),
    "passive-wait": ({"OMP_WAIT_POLICY": "PASSIVE"}, "default"),
    "one-thread": ({}, "1"),
    "governor": ({}, "governor"),
}
NEIGHBOURS = ("none", "unpinned", "pinned")


@contextmanager
def neighbour(kind: str):
    """A busy-loop process for the duration (none, unpinned, or pinned to the last core)."""
    if kind == "none":
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if kind == "pinned":
            os.sched_setaffinity(proc.pid, {max(os.sched_getaffinity(0))})
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def measure(params: Path, setting: str, seconds: float) -> dict:
    """Steps/s of one child process under one thread setting."""
    env_extra, threads = SETTINGS[setting]
    result = subprocess.run(
        [sys.executable, __file__, "--child", "--params", str(params), "--threads", threads,
         "--seconds", str(seconds)],
        env={**os.environ, **env_extra}, capture_output=True, text=True,
        timeout=seconds * 20 + 300, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(params_file: Path, threads: str, seconds: float) -> None:
    """Train on one batch for `seconds` (after two warm-up steps) and print steps/s as JSON."""
    import torch

    from pipelines.core.canonical import canonical_texts
    from pipelines.core.data import read_split
    from pipelines.core.params import load_params
    from pipelines.stages.backbone import load_backbone
    from pipelines.stages.train_speed import ThreadGovernor, probe_batch, resolve_precision

    params = load_params(params_file)
    tp, labels = params.train, list(params.data.labels)
    frame = read_split(params.data.train_file, params.data.max_train_rows)
    tokenizer, model = load_backbone(tp, labels)
    batch = probe_batch(tokenizer, canonical_texts(frame.text),
                        [labels.index(label) for label in frame.label], tp.batch_size,
                        tp.max_length, tp.seed)
    bf16, _ = resolve_precision(tp.precision, model, batch)
    if threads == "1":
        torch.set_num_threads(1)
    governor = ThreadGovernor() if threads == "governor" else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=tp.learning_rate)
    model.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        if governor is not None:
            governor.update()
        step()
        steps += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"steps": steps, "seconds": round(elapsed, 2),
                      "steps_per_s": round(steps / elapsed, 3),
                      "precision": "bf16" if bf16 else "fp32",
                      "threads_at_end": torch.get_num_threads(),
                      "governor_changes": governor.changes if governor else []}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--neighbours", default=",".join(NEIGHBOURS))
    parser.add_argument("--out", type=Path,
                        default=Path("reports/benchmark/train_shared_cores.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.params, args.threads, args.seconds)
        return
    settings, neighbours = args.settings.split(","), args.neighbours.split(",")
    load_before = os.getloadavg()
    print(f"train steps/s beside a neighbour: {len(os.sched_getaffinity(0))} usable cores, "
          f"{args.seconds} s per run; load average {' '.join(f'{x:.2f}' for x in load_before)}",
          flush=True)
    runs: dict[str, dict[str, dict]] = {}
    for kind in neighbours:
        for setting in settings:
            with neighbour(kind):
                run = measure(args.params, setting, args.seconds)
            runs.setdefault(setting, {})[kind] = run
            print(f"  {setting:<13} neighbour {kind:<9}: {run['steps_per_s']:6.3f} steps/s "
                  f"({run['precision']}, {run['threads_at_end']} thread(s) at the end)",
                  flush=True)
    print(f"\n{'setting':<13}" + "".join(f"{k:>18}" for k in neighbours))
    for setting, by_kind in runs.items():
        idle = by_kind.get("none", {}).get("steps_per_s")
        cells = []
        for kind in neighbours:
            rate = by_kind[kind]["steps_per_s"]
            cells.append(f"{rate:.3f}" + (f" ({rate / idle:.2f}x)" if idle else ""))
        print(f"{setting:<13}" + "".join(f"{c:>18}" for c in cells))
    result = {"load_average_before": load_before, "load_average_after": os.getloadavg(),
              "seconds_per_run": args.seconds, "cores": len(os.sched_getaffinity(0)),
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"results: {args.out}")


if __name__ == "__main__":
    main()
