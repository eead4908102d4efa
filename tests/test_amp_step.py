"""fp16 with two optimisers (CASS: one per net) under one GradScaler: one scale update per step,
each net unscaled once, clipping on true gradients, an overflow skips both (issue 15)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cass_hpc.optim import scaled_step


def pair(seed: int = 0) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {"cnn": nn.Linear(8, 4), "vit": nn.Linear(8, 4)}


def loss_of(nets: dict[str, nn.Module], x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.float16):
        a, b = nets["cnn"](x), nets["vit"](x)
    return (a.float() - b.float()).pow(2).mean() + a.float().pow(2).mean()


def optimisers(nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    return {a: torch.optim.SGD(n.parameters(), lr=0.1) for a, n in nets.items()}


def scaler(growth_interval: int = 1) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=growth_interval)


X = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))


def test_fp16_gradients_match_fp32_and_the_scale_moves_once_per_step() -> None:
    nets, reference = pair(), pair()
    grad_scaler = scaler()
    assert scaled_step(loss_of(nets, X), optimisers(nets), nets, grad_scaler)
    ref_loss = (reference["cnn"](X) - reference["vit"](X)).pow(2).mean() + reference["cnn"](X).pow(
        2
    ).mean()
    ref_loss.backward()
    for arm in nets:
        for p, q in zip(nets[arm].parameters(), reference[arm].parameters(), strict=True):
            assert torch.allclose(p.grad, q.grad, rtol=1e-2, atol=1e-3)  # unscaled: true grads
    assert grad_scaler.get_scale() == 2.0**11  # grown once (growth_interval 1), not twice


def test_the_old_per_optimiser_update_moved_the_scale_twice() -> None:
    """What Accelerate did (scaler.step + scaler.update inside each optimiser's step)."""
    nets, grad_scaler = pair(), scaler()
    opts = optimisers(nets)
    grad_scaler.scale(loss_of(nets, X)).backward()
    for optimizer in opts.values():
        grad_scaler.step(optimizer)
        grad_scaler.update()
    assert grad_scaler.get_scale() == 2.0**12  # the bug the test above rules out


def test_an_overflow_in_one_net_skips_both_steps_and_halves_the_scale_once() -> None:
    nets, grad_scaler = pair(), scaler(growth_interval=1000)
    before = copy.deepcopy(nets)
    loss = loss_of(nets, X)
    nets["cnn"].weight.register_hook(lambda g: g * float("inf"))
    assert not scaled_step(loss, optimisers(nets), nets, grad_scaler)
    for arm in nets:
        for p, q in zip(nets[arm].parameters(), before[arm].parameters(), strict=True):
            assert torch.equal(p, q)
    assert grad_scaler.get_scale() == 2.0**9


def test_clipping_sees_each_nets_true_gradient_norm() -> None:
    nets, reference = pair(), pair()
    clip = 1e-3
    scaled_step(loss_of(nets, X), optimisers(nets), nets, scaler(), clip_grad=clip)
    loss = (reference["cnn"](X) - reference["vit"](X)).pow(2).mean() + reference["cnn"](X).pow(
        2
    ).mean()
    loss.backward()
    for arm in ("cnn", "vit"):  # the second net too: unscaled once, then clipped to `clip`
        true = torch.nn.utils.get_total_norm([p.grad for p in reference[arm].parameters()])
        assert float(true) > clip
        got = torch.nn.utils.get_total_norm([p.grad for p in nets[arm].parameters()])
        assert float(got) == pytest.approx(clip, rel=1e-2)


def test_the_pretraining_loop_takes_one_scaler_step_per_batch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Wired into pretrain._step whenever Accelerate has a scaler (fp16 on a GPU); here a CPU
    scaler stands in for it (fp32 values, the same scale bookkeeping)."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader, TensorDataset

    from cass_hpc.methods.cass import CASS
    from cass_hpc.models import ArmSpec, build_arm
    from cass_hpc.pretrain import PretrainConfig, pretrain

    torch.manual_seed(0)
    cass = CASS(
        cnn=build_arm(ArmSpec("resnet10t"), num_classes=8),
        vit=build_arm(ArmSpec("vit_tiny_patch16_224", {"img_size": 16, "depth": 1}), num_classes=8),
    )
    accelerator = Accelerator(cpu=True)
    accelerator.scaler = scaler()  # growth every step: 2^10 → 2^12 after two batches
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(images, torch.zeros(16)), batch_size=8)
    cfg = PretrainConfig(epochs=1, batch_size=8, swa=False, knn_every=0, clip_grad=3.0)
    result = pretrain(cass, loader, cfg, tmp_path, accelerator)
    assert accelerator.scaler.get_scale() == 2.0**12 and len(result.loss) == 1
