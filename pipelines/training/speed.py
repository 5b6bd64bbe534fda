"""How the train stage uses the machine: the precision chosen by timing it, and intra-op
threads that wait passively.

CPU flags do not say whether bf16 pays: on a Xeon with AVX-512 BF16 and VNNI but no AMX, bf16
training ran at 0.73x fp32, while on an AMD EPYC with the same flags it ran at 2.55x. So `auto`
times one real batch (forward and backward) in each precision the device can run and keeps the
faster. And OpenMP threads that spin at barriers while a neighbour holds a core slow a step far
more than the share of CPU lost (docs/training-speed.md has the measurements).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from pipelines.runtime.cpu import cpu_flags

# bf16 must beat fp32 by this much to be chosen: it costs accuracy headroom, and a smaller gap
# is within the probe's noise on a shared machine.
BF16_MIN_SPEEDUP = 1.1
PROBE_WARMUP_STEPS = 1
PROBE_TIMED_STEPS = 3
PROBE_BUDGET_S = 30.0  # all candidates together; a slow candidate stops being timed early


def probe_batch(tokenizer, texts: list[str], label_ids: list[int], batch_size: int,
                max_length: int, seed: int) -> dict:
    """One training batch as the Trainer builds it: `batch_size` rows drawn (seeded) from the
    training texts, tokenised, padded to the longest, with their labels."""
    import numpy as np
    import torch

    rows = np.random.default_rng(seed).permutation(len(texts))[:batch_size]
    batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length,
                      padding=True, return_tensors="pt")
    return {**batch, "labels": torch.tensor([label_ids[i] for i in rows])}


def choose_precision(step_seconds: dict[str, list[float]]) -> str:
    """The precision to train in, from the probe's timed steps (seconds each): bf16 where its
    fastest step beats fp32's fastest by BF16_MIN_SPEEDUP, else fp32. The fastest step, not
    the mean, because a neighbour only ever adds time."""
    fp32, bf16 = step_seconds.get("fp32"), step_seconds.get("bf16")
    if not bf16:
        return "fp32"
    if not fp32:
        return "bf16"
    return "bf16" if min(fp32) >= BF16_MIN_SPEEDUP * min(bf16) else "fp32"


def bf16_runs_here(device: str) -> bool:
    """Whether this device has bf16 kernels at all: a GPU that supports it, or a CPU where
    oneDNN has bf16 kernels (AVX-512 or AMX); elsewhere torch emulates bf16, far slower."""
    import torch

    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def probe_precision(model, batch: dict, device: str = "cpu",
                    candidates: tuple[str, ...] | None = None,
                    budget_s: float = PROBE_BUDGET_S) -> dict[str, Any]:
    """Time forward + backward of one real training batch in fp32 and (where it runs) bf16
    mixed precision, as the Trainer runs them: a warm-up step, then up to PROBE_TIMED_STEPS
    timed ones per precision, interleaved so that a neighbour's burst hits both, within
    budget_s (a step under way is finished). The model's weights and the random state are
    left as they were."""
    import torch

    if candidates is None:
        candidates = ("fp32", "bf16") if bf16_runs_here(device) else ("fp32",)
    batch = {key: value.to(device) for key, value in batch.items()}
    was_training = model.training
    model.train()  # dropout on, as in training
    times: dict[str, list[float]] = {name: [] for name in candidates}
    deadline = time.monotonic() + budget_s

    def step(name: str) -> float:
        started = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=name == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    with torch.random.fork_rng(devices=[]):
        for name in candidates:
            for _ in range(PROBE_WARMUP_STEPS):
                warmup = step(name)
            if time.monotonic() > deadline:  # the warm-up alone used the budget: that is its figure
                times[name].append(warmup)
        for _ in range(PROBE_TIMED_STEPS):
            for name in candidates:
                if time.monotonic() <= deadline or not times[name]:
                    times[name].append(step(name))
    model.train(was_training)
    chosen = choose_precision(times)
    return {"chosen": chosen, "step_seconds": {k: [round(t, 4) for t in v]
                                               for k, v in times.items()},
            "batch_shape": list(batch["input_ids"].shape), "device": device,
            "cpu_bf16_flags": sorted(cpu_flags() & {"amx_bf16", "avx512_bf16"})}


def resolve_precision(precision: str, model, batch: dict) -> tuple[bool, dict[str, Any]]:
    """(bf16 or not, how it was decided): `fp32`/`bf16` force; `auto` probes where the CPU has
    bf16 kernels, except under a distributed launch (every process must agree) and on a GPU
    (bf16 where supported)."""
    import torch

    if precision != "auto":
        return precision == "bf16", {"chosen": precision, "by": "train.precision"}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or device == "cuda":
        bf16 = bf16_runs_here(device)
        return bf16, {"chosen": "bf16" if bf16 else "fp32", "by": f"{device} bf16 support"}
    if not bf16_runs_here(device):
        return False, {"chosen": "fp32", "by": "no bf16 kernels on this CPU (oneDNN)"}
    probe = probe_precision(model, batch, device)
    return probe["chosen"] == "bf16", {**probe, "by": "probe"}


def wait_passively() -> str | None:
    """Make torch's OpenMP threads sleep, not spin, while they wait at a barrier (unless
    OMP_WAIT_POLICY is set already): beside a CPU-bound neighbour, spinning threads kept
    training at 0.29-0.50x of passive ones. OpenMP reads it once, when torch loads, so this
    must run first; returns the policy in force, or None where torch was loaded before."""
    if "torch" in sys.modules:
        return None
    return os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
