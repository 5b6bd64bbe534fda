"""The train stage's use of the machine: the precision probe's choice and the thread governor."""

from __future__ import annotations

import pytest

from pipelines.core import cpu
from pipelines.stages import train_speed
from tests.conftest import ROOT


@pytest.mark.parametrize(("timings", "expected"), [
    ({"fp32": [0.30, 0.32], "bf16": [0.12, 0.13]}, "bf16"),   # AMX / AVX-512 BF16 on EPYC
    ({"fp32": [0.30, 0.31], "bf16": [0.41, 0.40]}, "fp32"),   # Xeon without AMX: bf16 0.73x
    ({"fp32": [0.30, 0.31], "bf16": [0.29, 0.28]}, "fp32"),   # within noise: no bf16 for 7 %
    ({"fp32": [0.90, 0.30], "bf16": [0.25, 0.26]}, "bf16"),   # a neighbour's burst ignored
    ({"fp32": [0.30]}, "fp32"),                               # bf16 not timed
])
def test_probe_picks_bf16_only_when_its_fastest_step_clearly_beats_fp32(timings, expected):
    assert train_speed.choose_precision(timings) == expected


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_explicit_precision_forces_without_probing(monkeypatch, forced):
    monkeypatch.setattr(train_speed, "probe_precision",
                        lambda *a, **k: pytest.fail("probed despite an explicit precision"))
    bf16, record = train_speed.resolve_precision(forced, model=None, batch={})
    assert bf16 is (forced == "bf16") and record == {"chosen": forced, "by": "train.precision"}


def test_auto_takes_the_probes_choice_and_keeps_its_figures(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train_speed, "bf16_runs_here", lambda device: True)
    figures = {"chosen": "fp32", "step_seconds": {"fp32": [0.3], "bf16": [0.41]}}
    monkeypatch.setattr(train_speed, "probe_precision", lambda *a, **k: figures)
    bf16, record = train_speed.resolve_precision("auto", model=None, batch={})
    assert bf16 is False and record["by"] == "probe" and record["step_seconds"]["bf16"] == [0.41]


def test_auto_keeps_fp32_without_probing_where_the_cpu_has_no_bf16_kernels(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train_speed, "bf16_runs_here", lambda device: False)
    monkeypatch.setattr(train_speed, "probe_precision",
                        lambda *a, **k: pytest.fail("probed without bf16 kernels"))
    assert train_speed.resolve_precision("auto", None, {})[0] is False


def test_real_probe_on_the_smoke_backbone_returns_a_choice_with_figures(tmp_path):
    import torch

    from pipelines.core.params import apply_profile
    from pipelines.stages.backbone import load_backbone

    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    tp = apply_profile(ROOT / "profiles/smoke.yaml", target).train
    tokenizer, model = load_backbone(tp, ["not-offensive", "offensive"])
    texts = [f"message number {i} says {'you idiot ' * (i % 4)}hello" for i in range(40)]
    batch = train_speed.probe_batch(tokenizer, texts, [i % 2 for i in range(40)],
                                    tp.batch_size, tp.max_length, tp.seed)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = train_speed.probe_precision(model.eval(), batch, candidates=("fp32", "bf16"),
                                         budget_s=60)
    assert result["chosen"] in {"fp32", "bf16"}
    assert result["batch_shape"][0] == tp.batch_size
    for name in ("fp32", "bf16"):
        assert 1 <= len(result["step_seconds"][name]) <= train_speed.PROBE_TIMED_STEPS
        assert all(t > 0 for t in result["step_seconds"][name])
    assert result["chosen"] == train_speed.choose_precision(result["step_seconds"])
    # The probe leaves no trace on what training starts from.
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state()) and not model.training


@pytest.mark.parametrize(("neighbours", "cores", "threads"), [
    (0.0, 2, 2), (0.3, 2, 2), (0.4, 2, 1), (1.0, 2, 1), (1.9, 2, 1), (1.0, 4, 3), (0.0, 1, 1),
])
def test_threads_leave_the_neighbours_cores_to_them(neighbours, cores, threads):
    assert train_speed.threads_beside(neighbours, cores) == threads


def test_busy_seconds_count_only_our_cores_and_not_idle_or_iowait(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal
    stat.write_text("cpu  900 0 900 900 900 0 0 0 0 0\n"
                    "cpu0 100 10 20 5000 7000 1 2 3 0 0\n"
                    "cpu1 400 0 100 9000 1 0 0 0 0 0\n"
                    "intr 12345\n")
    tick = cpu.os.sysconf("SC_CLK_TCK")
    assert cpu.busy_cpu_seconds({0}, stat) == pytest.approx(136 / tick)
    assert cpu.busy_cpu_seconds({0, 1}, stat) == pytest.approx(636 / tick)
    assert cpu.busy_cpu_seconds({0}, tmp_path / "missing") is None


def test_governor_drops_to_the_free_cores_and_comes_back(monkeypatch):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    readings = iter([1.0, 0.05])
    governor = train_speed.ThreadGovernor(interval_s=0.0, cpus={0, 1})
    monkeypatch.setattr(governor.meter, "read", lambda: next(readings))
    try:
        assert governor.update() == 1 and torch.get_num_threads() == 1
        assert governor.update() == 2 and torch.get_num_threads() == 2
        assert governor.changes == [{"neighbour_cores": 1.0, "threads": 1},
                                    {"neighbour_cores": 0.05, "threads": 2}]
    finally:
        torch.set_num_threads(before)


def test_neighbour_meter_sees_a_busy_process_beside_us():
    import subprocess
    import sys
    import time

    meter = cpu.NeighbourMeter()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(3)
        assert meter.read() >= 0.5  # at least half a core, however loaded the machine is
    finally:
        busy.kill()
        busy.wait(timeout=30)
