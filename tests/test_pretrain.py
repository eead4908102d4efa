"""The one pretraining loop: SWA, checkpoints and resume, timings, NaN handling."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from cass_hpc import store
from cass_hpc.methods.cass import CASS
from cass_hpc.models import ArmSpec, build_arm
from cass_hpc.pretrain import NonFiniteLossError, PretrainConfig, pretrain

CFG = PretrainConfig(epochs=3, batch_size=8, swa_start=0.3, keep_checkpoint=True)


def tiny_cass(seed: int = 0) -> CASS:
    torch.manual_seed(seed)
    cnn = build_arm(ArmSpec("resnet10t"), num_classes=8)
    vit = build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 16, "depth": 1}), num_classes=8)
    return CASS(cnn=cnn, vit=vit)


def loader() -> DataLoader:
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(images, torch.zeros(16)), batch_size=8, shuffle=False)


def test_pretraining_writes_each_nets_weights_and_its_timings(tmp_path: Path) -> None:
    result = pretrain(tiny_cass(), loader(), CFG, tmp_path, Accelerator(cpu=True))
    assert (tmp_path / "cnn.pt").exists() and (tmp_path / "vit.pt").exists()
    record = store.read_json(tmp_path / "pretrain.json")
    assert record["images"] == 3 * 16 and len(record["loss"]) == 3 and len(record["epoch_s"]) == 3
    assert record["wall_s"] > 0 and record["images_per_s"] > 0 and record["peak_mem_mb"] > 0
    assert set(record["spread"]) == {"cnn", "vit"} and all(
        len(v) == 3 for v in record["spread"].values()
    )
    assert record["precision"] == "no" and result.device == "cpu"


def test_swa_saves_the_averaged_weights_not_the_last_ones(tmp_path: Path) -> None:
    method = tiny_cass()
    pretrain(method, loader(), CFG, tmp_path / "swa", Accelerator(cpu=True))
    saved = torch.load(tmp_path / "swa" / "vit.pt", weights_only=True)
    last = method.arms["vit"].net.state_dict()
    assert any(not torch.equal(saved[k], last[k]) for k in last)

    method = tiny_cass()
    pretrain(method, loader(), replace(CFG, swa=False), tmp_path / "plain", Accelerator(cpu=True))
    saved = torch.load(tmp_path / "plain" / "vit.pt", weights_only=True)
    last = method.arms["vit"].net.state_dict()
    assert all(torch.equal(saved[k], last[k]) for k in last)


def test_a_rerun_resumes_after_the_last_checkpointed_epoch(tmp_path: Path) -> None:
    pretrain(tiny_cass(), loader(), replace(CFG, epochs=2), tmp_path, Accelerator(cpu=True))
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 2
    result = pretrain(tiny_cass(seed=5), loader(), CFG, tmp_path, Accelerator(cpu=True))
    assert len(result.loss) == 3 and result.images == 3 * 16  # epochs 1-2 kept, only 3 ran


class NaNAfter(CASS):
    """CASS whose loss turns NaN at a given step (counted over the run)."""

    def __init__(self, base: CASS, bad_step: int) -> None:
        super().__init__(cnn=base.arms["cnn"], vit=base.arms["vit"])
        self.calls, self.bad_step = 0, bad_step

    def training_step(self, images, progress):  # type: ignore[no-untyped-def]
        self.calls += 1
        out = super().training_step(images, progress)
        if self.calls >= self.bad_step:
            out.loss = out.loss * float("nan")
        return out


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint(
    tmp_path: Path,
) -> None:
    method = NaNAfter(tiny_cass(), bad_step=4)  # 2 steps per epoch: epoch 2, step 2
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 2, step 2.*checkpoint\.pt"):
        pretrain(method, loader(), CFG, tmp_path, Accelerator(cpu=True))
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "pretrain.json").exists()


class GradSpy(CASS):
    """Records, at each step, whether gradients from earlier steps are still there."""

    def __init__(self, base: CASS) -> None:
        super().__init__(cnn=base.arms["cnn"], vit=base.arms["vit"])
        self.stale_grads: list[bool] = []

    def training_step(self, images, progress):  # type: ignore[no-untyped-def]
        self.stale_grads.append(any(p.grad is not None for p in self.parameters()))
        return super().training_step(images, progress)


def test_paper_compat_accumulates_gradients_cycles_lr_per_batch_and_skips_swa(
    tmp_path: Path,
) -> None:
    cfg = replace(CFG, epochs=2, t_max=2)  # 2 steps per epoch; SWA averages both epochs
    ours, compat = GradSpy(tiny_cass()), GradSpy(tiny_cass())
    plain = pretrain(ours, loader(), cfg, tmp_path / "ours", Accelerator(cpu=True))
    quirks = pretrain(
        compat, loader(), replace(cfg, paper_compat=True), tmp_path / "compat",
        Accelerator(cpu=True),
    )  # fmt: skip
    assert ours.stale_grads == [False] * 4  # zero_grad every step
    assert compat.stale_grads == [False, True, True, True]  # the notebooks never zeroed
    # per epoch: one cosine step (lr halfway down); per batch: 2 steps = the bottom of the cycle
    assert plain.lr[0] == pytest.approx(CFG.eta_min + (CFG.lr - CFG.eta_min) / 2)
    assert quirks.lr[0] == pytest.approx(CFG.eta_min)
    saved = torch.load(tmp_path / "compat" / "vit.pt", weights_only=True)
    last = compat.arms["vit"].net.state_dict()
    assert all(torch.equal(saved[k], last[k]) for k in last)  # SWA never applied


class DiesAt(CASS):
    """CASS that raises (like a kill) at the first step of ``epoch``."""

    def __init__(self, base: CASS, epoch: int) -> None:
        super().__init__(cnn=base.arms["cnn"], vit=base.arms["vit"])
        self.die_epoch = epoch

    def training_step(self, images, progress):  # type: ignore[no-untyped-def]
        if progress.epoch == self.die_epoch:
            raise KeyboardInterrupt
        return super().training_step(images, progress)


def shuffled_loader() -> DataLoader:
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return DataLoader(
        TensorDataset(images, torch.zeros(16)), batch_size=8, shuffle=True,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip


def test_resume_after_a_kill_between_epochs_gives_identical_weights(tmp_path: Path) -> None:
    reference = pretrain(
        tiny_cass(), shuffled_loader(), CFG, tmp_path / "ref", Accelerator(cpu=True)
    )
    with pytest.raises(KeyboardInterrupt):
        pretrain(
            DiesAt(tiny_cass(), 3), shuffled_loader(), CFG, tmp_path / "cut", Accelerator(cpu=True)
        )
    torch.manual_seed(123)  # the new process starts from other random states; the checkpoint rules
    resumed = pretrain(
        tiny_cass(seed=9), shuffled_loader(), CFG, tmp_path / "cut", Accelerator(cpu=True)
    )
    assert resumed.loss == reference.loss and resumed.spread == reference.spread
    for arm in ("cnn", "vit"):
        ref = torch.load(tmp_path / "ref" / f"{arm}.pt", weights_only=True)
        got = torch.load(tmp_path / "cut" / f"{arm}.pt", weights_only=True)
        assert all(torch.equal(ref[k], got[k]) for k in ref), arm
