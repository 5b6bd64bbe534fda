"""Training steps/s alone and beside a CPU-bound neighbour, per thread setting, in one run
(by hand, not in tests).

    .venv/bin/python benchmarks/train_shared_cores.py --seconds 15

For each thread setting (torch's default of one thread per core; the same with
OMP_WAIT_POLICY=PASSIVE, as the train stage now runs; one thread; a ThreadGovernor that follows
the cores other processes leave free, per /proc/stat; the governor with passive waiting), a
fresh process loads the configured backbone once and trains it on one real batch (forward,
backward, AdamW step, the stage's precision) for --seconds per neighbour phase: none, one
busy-loop process unpinned, the same pinned to the last usable core. The process starts each
neighbour itself and kills it at the phase's end. Prints a table of steps/s and each setting's
ratio to its own figure without a neighbour, with the load average, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.runtime.params import PARAMS_FILE

SETTINGS = {  # name: (extra environment, thread setting for the child)
    "default": ({}, "default"),
    "passive-wait": ({"OMP_WAIT_POLICY": "PASSIVE"}, "default"),
    "one-thread": ({}, "1"),
    "governor": ({}, "governor"),
    "passive-governor": ({"OMP_WAIT_POLICY": "PASSIVE"}, "governor"),
}
NEIGHBOURS = ("none", "unpinned", "pinned")


def usable_cpus() -> set[int]:
    """The cores this process may run on (its affinity; every core where that is unknown)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def busy_cpu_seconds(cpus: set[int], stat: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds spent busy (all but idle and iowait) since boot on the given cores, by every
    process; None where /proc/stat is missing (e.g. macOS)."""
    try:
        lines = stat.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [int(v) for v in fields]
            ticks += sum(values[:8]) - values[3] - values[4]  # minus idle, iowait
    return ticks / os.sysconf("SC_CLK_TCK")


class NeighbourMeter:
    """How many of our cores other processes kept busy since the last reading: busy time on
    those cores minus this process's own CPU time, over the wall time between readings."""

    def __init__(self, cpus: set[int] | None = None):
        self.cpus = cpus or usable_cpus()
        self._last = self._snapshot()

    def _snapshot(self) -> tuple[float, float | None, float]:
        return time.monotonic(), busy_cpu_seconds(self.cpus), time.process_time()

    def read(self) -> float | None:
        """Cores' worth of other processes' work since the last call (None: cannot tell)."""
        now = self._snapshot()
        (wall0, busy0, own0), (wall1, busy1, own1) = self._last, now
        self._last = now
        if busy0 is None or busy1 is None or wall1 - wall0 <= 0:
            return None
        other = (busy1 - busy0) - (own1 - own0)
        return min(max(other / (wall1 - wall0), 0.0), float(len(self.cpus)))


def threads_beside(neighbour_cores: float, cores: int) -> int:
    """Intra-op threads for `cores` usable cores of which neighbours keep `neighbour_cores`
    busy: one per core they leave free, at least one. A neighbour counts from a third of a
    core: background daemons stay below it."""
    return max(1, cores - math.floor(neighbour_cores + 2 / 3))


class ThreadGovernor:
    """The candidate measured against passive waiting, and not adopted: re-fit torch's intra-op
    threads to the free cores every `interval_s` seconds of training (update() between steps)."""

    def __init__(self, interval_s: float = 3.0, cpus: set[int] | None = None):
        import torch

        self.cpus = cpus or usable_cpus()
        self.interval_s = interval_s
        self.meter = NeighbourMeter(self.cpus)
        self._next = time.monotonic() + interval_s
        self.threads = torch.get_num_threads()
        self.changes: list[dict[str, float]] = []

    def update(self) -> int:
        """The thread count in force after this call (changed only at each interval's end)."""
        if time.monotonic() < self._next:
            return self.threads
        self._next = time.monotonic() + self.interval_s
        neighbours = self.meter.read()
        if neighbours is None:
            return self.threads
        wanted = threads_beside(neighbours, len(self.cpus))
        if wanted != self.threads:
            import torch

            torch.set_num_threads(wanted)
            self.changes.append({"neighbour_cores": round(neighbours, 2), "threads": wanted})
            self.threads = wanted
        return self.threads


@contextmanager
def neighbour(kind: str):
    """A busy-loop process for the duration (none, unpinned, or pinned to the last core)."""
    if kind == "none":
        yield None
        return
    # Busy until killed, or until its parent is gone (a killed benchmark leaves no spinner).
    spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
    proc = subprocess.Popen([sys.executable, "-c", spin])
    try:
        if kind == "pinned":
            os.sched_setaffinity(proc.pid, {max(os.sched_getaffinity(0))})
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def measure(params: Path, setting: str, neighbours: list[str], seconds: float) -> dict:
    """Steps/s per neighbour phase of one child process under one thread setting."""
    env_extra, threads = SETTINGS[setting]
    result = subprocess.run(
        [sys.executable, __file__, "--child", "--params", str(params), "--threads", threads,
         "--neighbours", ",".join(neighbours), "--seconds", str(seconds)],
        env={**os.environ, **env_extra}, capture_output=True, text=True,
        timeout=len(neighbours) * seconds * 10 + 600, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(params_file: Path, threads: str, neighbours: list[str], seconds: float) -> None:
    """Per neighbour phase: a warm-up step, then train on one batch for `seconds`; print
    steps/s per phase as JSON."""
    import torch

    from pipelines.core.data import read_split
    from pipelines.runtime.canonical import canonical_texts
    from pipelines.runtime.params import load_params
    from pipelines.training.backbone import load_backbone
    from pipelines.training.speed import probe_batch, resolve_precision

    params = load_params(params_file)
    tp, labels = params.train, list(params.data.labels)
    frame = read_split(params.data.train_file, 20 * tp.batch_size)  # a batch is drawn from these
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

    phases = {}
    for kind in neighbours:
        with neighbour(kind):
            step()  # warm-up, and the neighbour gets going
            steps, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                if governor is not None:
                    governor.update()
                step()
                steps += 1
            elapsed = time.perf_counter() - started
        phases[kind] = {"steps": steps, "seconds": round(elapsed, 2),
                        "steps_per_s": round(steps / elapsed, 3),
                        "threads_at_end": torch.get_num_threads()}
    print(json.dumps({"precision": "bf16" if bf16 else "fp32", "phases": phases,
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
        child(args.params, args.threads, args.neighbours.split(","), args.seconds)
        return
    settings, neighbours = args.settings.split(","), args.neighbours.split(",")
    load_before = os.getloadavg()
    print(f"train steps/s beside a neighbour: {len(os.sched_getaffinity(0))} usable cores, "
          f"{args.seconds} s per run; load average {' '.join(f'{x:.2f}' for x in load_before)}",
          flush=True)
    runs: dict[str, dict[str, dict]] = {}
    for setting in settings:
        measured = measure(args.params, setting, neighbours, args.seconds)
        runs[setting] = measured["phases"]
        for kind, run in measured["phases"].items():
            print(f"  {setting:<17} neighbour {kind:<9}: {run['steps_per_s']:6.3f} steps/s "
                  f"({measured['precision']}, {run['threads_at_end']} thread(s) at the end)",
                  flush=True)
        if measured["governor_changes"]:
            print(f"  governor changes: {measured['governor_changes']}", flush=True)
    print(f"\n{'setting':<17}" + "".join(f"{k:>18}" for k in neighbours))
    for setting, by_kind in runs.items():
        idle = by_kind.get("none", {}).get("steps_per_s")
        cells = []
        for kind in neighbours:
            rate = by_kind[kind]["steps_per_s"]
            cells.append(f"{rate:.3f}" + (f" ({rate / idle:.2f}x)" if idle else ""))
        print(f"{setting:<17}" + "".join(f"{c:>18}" for c in cells))
    result = {"load_average_before": load_before, "load_average_after": os.getloadavg(),
              "seconds_per_run": args.seconds, "cores": len(os.sched_getaffinity(0)),
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"results: {args.out}")


if __name__ == "__main__":
    main()
