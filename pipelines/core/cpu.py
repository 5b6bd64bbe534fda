"""What the CPU offers: feature flags that say which matrix instructions torch can use, and
which of its cores other processes are keeping busy."""

from __future__ import annotations

import os
import time
from pathlib import Path

# bf16 dot products: AMX tiles (Sapphire Rapids and later) or AVX-512 BF16 (Cooper Lake, Zen 4).
# They do not settle whether bf16 pays (2.55x fp32 on an AMD EPYC, 0.73x on a Xeon without AMX,
# benchmarks/train_precision.py): training times it (train_speed.py); serving reads them.
BF16_MATRIX_FLAGS = ("amx_bf16",)
BF16_VECTOR_FLAGS = ("avx512_bf16",)
BF16_FLAGS = BF16_MATRIX_FLAGS + BF16_VECTOR_FLAGS
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # int8 dot products (VNNI or AMX)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of this CPU (empty where /proc/cpuinfo is missing, e.g. macOS)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """True where the CPU has bf16 dot-product instructions: where bf16 training pays."""
    return bool((cpu_flags() if flags is None else flags) & set(BF16_FLAGS))


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
