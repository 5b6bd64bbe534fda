"""What the CPU offers: feature flags that say which matrix instructions torch can use."""

from __future__ import annotations

from pathlib import Path

# bf16 matrix work: AMX tiles (Sapphire Rapids and later) or AVX-512 BF16 dot products.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


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
    """True where bf16 matmuls run on dedicated instructions rather than being emulated."""
    return bool((cpu_flags() if flags is None else flags) & set(BF16_FLAGS))
