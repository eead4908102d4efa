"""SIGUSR2 (SLURM's time-limit / preemption warning) mid-epoch: the loop saves at the next step
boundary with the step, and the rerun resumes from that very step onto the same trajectory."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from test_pretrain import CFG, tiny_cass

from cass_hpc import preempt
from cass_hpc.data.dataset import ShardDataset
from cass_hpc.data.loader import make_loader
from cass_hpc.data.shards import read_manifest
from cass_hpc.data.transforms import eval_transform, paper_augmentation
from cass_hpc.finetune import FinetuneConfig, finetune
from cass_hpc.methods.cass import CASS
from cass_hpc.models import ArmSpec, build_arm
from cass_hpc.pretrain import pretrain


class SignalledAt(CASS):
    """CASS that receives SIGUSR2 from outside during step ``step`` of ``epoch``."""

    def __init__(self, base: CASS, epoch: int, step: int) -> None:
        super().__init__(cnn=base.arms["cnn"], vit=base.arms["vit"])
        self.at = (epoch, step)

    def training_step(self, images, progress):  # type: ignore[no-untyped-def]
        if (progress.epoch, progress.step) == self.at:
            os.kill(os.getpid(), signal.SIGUSR2)
        return super().training_step(images, progress)


def test_usr2_mid_epoch_saves_the_step_and_the_rerun_gives_identical_weights(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    data = ShardDataset(read_manifest(tiny_dataset), "train", paper_augmentation(16))
    cfg = replace(CFG, epochs=2, batch_size=4)  # 8 steps per epoch

    def run(method: CASS, out: Path):  # type: ignore[no-untyped-def]
        loader = make_loader(data, cfg.batch_size, train=True, seed=0, workers=0)
        return pretrain(method, loader, cfg, out, Accelerator(cpu=True))

    reference = run(tiny_cass(), tmp_path / "ref")
    with pytest.raises(preempt.Stopped):
        run(SignalledAt(tiny_cass(), epoch=2, step=3), tmp_path / "cut")
    saved = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 2 and saved["partial"]["step"] == 3
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # the guard put it back

    torch.manual_seed(123)  # a new process starts from other random states: the checkpoint rules
    resumed = run(tiny_cass(seed=9), tmp_path / "cut")
    assert resumed.loss == reference.loss and resumed.spread == reference.spread
    assert resumed.images == reference.images
    for arm in ("cnn", "vit"):
        ref = torch.load(tmp_path / "ref" / f"{arm}.pt", weights_only=True)
        got = torch.load(tmp_path / "cut" / f"{arm}.pt", weights_only=True)
        assert all(torch.equal(ref[k], got[k]) for k in ref), arm


class Relay(torch.nn.Module):
    """A fine-tuned net that receives SIGUSR2 on its ``at``-th training forward pass."""

    def __init__(self, net: torch.nn.Module, at: int) -> None:
        super().__init__()
        self.net, self.at, self.calls = net, at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), signal.SIGUSR2)
        return self.net(x)


def test_usr2_mid_epoch_in_fine_tuning_resumes_to_identical_metrics(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(tiny_dataset)
    train = ShardDataset(manifest, "train", paper_augmentation(16))
    val, test = (ShardDataset(manifest, s, eval_transform(16)) for s in ("val", "test"))
    cfg = FinetuneConfig(max_epochs=3, patience=3, batch_size=8, lr=1e-3)

    def run(at: int, ckpt: Path):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        net = Relay(build_arm(ArmSpec("resnet10t"), num_classes=manifest.num_classes), at)
        loaders = [make_loader(d, 8, train=d is train, seed=1, workers=0)
                   for d in (train, val, test)]  # fmt: skip
        return finetune(
            net, *loaders, num_classes=manifest.num_classes, train_labels=train.labels, cfg=cfg,
            accelerator=Accelerator(cpu=True), checkpoint=ckpt,
        )  # fmt: skip

    reference = run(0, tmp_path / "ref.pt")
    steps = len(make_loader(train, 8, train=True, seed=1, workers=0))
    with pytest.raises(preempt.Stopped):
        run(steps + 2, tmp_path / "cut.pt")  # epoch 2, step 2
    saved = torch.load(tmp_path / "cut.pt", weights_only=True)
    assert (saved["epoch"], saved["partial"]["step"]) == (2, 2)
    resumed = run(0, tmp_path / "cut.pt")
    assert resumed.metrics == reference.metrics
    assert resumed.history == reference.history


def test_without_a_guard_usr2_keeps_its_previous_handler() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        with preempt.guard():
            os.kill(os.getpid(), signal.SIGUSR2)
            assert preempt.requested() and not seen  # inside: a request, not the handler
            with pytest.raises(preempt.Stopped):
                preempt.hand_over()  # the previous handler runs (it does not exit here)
            assert seen == [signal.SIGUSR2]
        os.kill(os.getpid(), signal.SIGUSR2)
        assert seen == [signal.SIGUSR2] * 2 and not preempt.requested()
    finally:
        signal.signal(signal.SIGUSR2, previous)
