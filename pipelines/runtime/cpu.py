"""What the CPU offers: feature flags that say which matrix instructions torch can use."""

from __future__ import annotations

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

