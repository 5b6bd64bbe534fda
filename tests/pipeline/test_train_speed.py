"""The train stage's use of the machine: the precision probe's choice, passive OpenMP waits."""

from __future__ import annotations

import os

import pytest

from pipelines.training import speed
from tests.conftest import ROOT


@pytest.mark.parametrize(("timings", "expected"), [
    ({"fp32": [0.30, 0.32], "bf16": [0.12, 0.13]}, "bf16"),   # AMX / AVX-512 BF16 on EPYC
    ({"fp32": [0.30, 0.31], "bf16": [0.41, 0.40]}, "fp32"),   # Xeon without AMX: bf16 0.73x
    ({"fp32": [0.30, 0.31], "bf16": [0.29, 0.28]}, "fp32"),   # within noise: no bf16 for 7 %
    ({"fp32": [0.90, 0.30], "bf16": [0.25, 0.26]}, "bf16"),   # a neighbour's burst ignored
    ({"fp32": [0.30]}, "fp32"),                               # bf16 not timed
])
def test_probe_picks_bf16_only_when_its_fastest_step_clearly_beats_fp32(timings, expected):
    assert speed.choose_precision(timings) == expected


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_explicit_precision_forces_without_probing(monkeypatch, forced):
    monkeypatch.setattr(speed, "probe_precision",
                        lambda *a, **k: pytest.fail("probed despite an explicit precision"))
    bf16, record = speed.resolve_precision(forced, model=None, batch={})
    assert bf16 is (forced == "bf16") and record == {"chosen": forced, "by": "train.precision"}


def test_auto_takes_the_probes_choice_and_keeps_its_figures(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(speed, "bf16_runs_here", lambda device: True)
    figures = {"chosen": "fp32", "step_seconds": {"fp32": [0.3], "bf16": [0.41]}}
    monkeypatch.setattr(speed, "probe_precision", lambda *a, **k: figures)
    bf16, record = speed.resolve_precision("auto", model=None, batch={})
    assert bf16 is False and record["by"] == "probe" and record["step_seconds"]["bf16"] == [0.41]


def test_auto_keeps_fp32_without_probing_where_the_cpu_has_no_bf16_kernels(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(speed, "bf16_runs_here", lambda device: False)
    monkeypatch.setattr(speed, "probe_precision",
                        lambda *a, **k: pytest.fail("probed without bf16 kernels"))
    assert speed.resolve_precision("auto", None, {})[0] is False


def test_real_probe_on_the_smoke_backbone_returns_a_choice_with_figures(tmp_path):
    import torch

    from pipelines.runtime.params import apply_profile
    from pipelines.training.backbone import load_backbone

    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    tp = apply_profile(ROOT / "profiles/smoke.yaml", target).train
    tokenizer, model = load_backbone(tp, ["not-offensive", "offensive"])
    texts = [f"message number {i} says {'you idiot ' * (i % 4)}hello" for i in range(40)]
    batch = speed.probe_batch(tokenizer, texts, [i % 2 for i in range(40)],
                                    tp.batch_size, tp.max_length, tp.seed)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = speed.probe_precision(model.eval(), batch, candidates=("fp32", "bf16"),
                                         budget_s=60)
    assert result["chosen"] in {"fp32", "bf16"}
    assert result["batch_shape"][0] == tp.batch_size
    for name in ("fp32", "bf16"):
        assert 1 <= len(result["step_seconds"][name]) <= speed.PROBE_TIMED_STEPS
        assert all(t > 0 for t in result["step_seconds"][name])
    assert result["chosen"] == speed.choose_precision(result["step_seconds"])
    # The probe leaves no trace on what training starts from.
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state()) and not model.training


def test_openmp_waits_passively_unless_told_otherwise_or_too_late():
    import subprocess
    import sys

    show = ("import sys, os; {pre}from pipelines.training.speed import wait_passively; "
            "print(wait_passively(), os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def run(pre: str = "", **extra: str) -> str:
        return subprocess.run([sys.executable, "-c", show.format(pre=pre)],
                              env={**env, **extra}, cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert run() == "PASSIVE PASSIVE"
    assert run(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE ACTIVE"
    # Once torch (and OpenMP) is loaded the policy cannot change: it says so, and sets nothing.
    assert run(pre="import torch; ") == "None None"


def test_the_train_stage_sets_the_wait_policy_before_anything_loads_torch(monkeypatch, tmp_path):
    from pipelines.stages import train as train_stage

    class Called(Exception):
        pass

    def wait_passively():
        raise Called

    monkeypatch.setattr(train_stage, "wait_passively", wait_passively)
    with pytest.raises(Called):
        train_stage.train(params=None, out_dir=tmp_path)  # nothing else ran before it
