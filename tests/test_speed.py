"""Speed switches of the pretraining step (issue 15): they change speed, not what is computed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from cass_hpc.methods import build_cass
from cass_hpc.methods.base import StepOutput
from cass_hpc.models import ArmSpec
from cass_hpc.optim import build_optimizer
from cass_hpc.run import spec_from_config
from cass_hpc.speed import VARIANTS, StepSpeed, apply_speed, is_convnet
from cass_hpc.step import RunningSums

CPU = torch.device("cpu")
CONF = str(Path(__file__).resolve().parents[1] / "conf")


def tiny_cass():  # type: ignore[no-untyped-def]
    arms = {"cnn": ArmSpec("resnet10t"), "vit": ArmSpec("vit_tiny_patch16_224", {"img_size": 32})}
    return build_cass(arms, 16, {})


def test_channels_last_converts_the_cnn_arm_only_and_keeps_its_outputs() -> None:
    method = tiny_cass().eval()
    x = torch.rand(2, 3, 32, 32)
    before = method.arms["cnn"](x)
    assert apply_speed(method, StepSpeed(channels_last=True)) == ["arms.cnn"]
    conv = next(m for m in method.arms["cnn"].modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert is_convnet(method.arms["cnn"]) and not is_convnet(method.arms["vit"])
    assert torch.allclose(method.arms["cnn"](x), before, atol=1e-4)


def test_every_variant_is_known_and_base_reads_the_host_each_step() -> None:
    for name in VARIANTS:
        StepSpeed.variant(name, CPU)
    assert StepSpeed.variant("base", CPU) == StepSpeed()
    assert StepSpeed().read_every == 1 and StepSpeed.auto(torch.device("cuda")).read_every == 0
    with pytest.raises(ValueError, match="unknown speed variant 'turbo'"):
        StepSpeed.variant("turbo", CPU)


def test_fused_adam_takes_the_same_step_as_the_loop_adam() -> None:
    torch.manual_seed(0)
    nets = [torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [build_optimizer("adamw", n.parameters(), 1e-2, 0.04, fused=f)
            for n, f in zip(nets, (False, True), strict=True)]  # fmt: skip
    x = torch.randn(16, 8)
    for net, opt in zip(nets, opts, strict=True):
        net(x).pow(2).mean().backward()
        opt.step()
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_running_sums_on_the_device_equal_the_host_float_sums() -> None:
    losses = [torch.tensor(v, dtype=torch.float32) for v in (0.1, 1.7, 2.3333, 3.9)]
    emb = torch.randn(4, 8)
    running, host = RunningSums(CPU, total=0.25, spreads={"cnn": 1.5}), 0.25
    for loss in losses:
        running.add(StepOutput(loss=loss, embeddings={"cnn": emb, "vit": emb[:1]}))
        host += float(loss)
    total, spreads = running.read()
    assert total == host  # bit for bit: float64 on the device, as Python floats
    assert spreads["vit"] == 0.0 and spreads["cnn"] > 1.5


def test_configured_switches_override_the_devices_default_and_a_typo_is_named() -> None:
    cpu = torch.device("cpu")
    assert StepSpeed.configured(cpu, {"channels_last": None}) == StepSpeed.auto(cpu)
    chosen = StepSpeed.configured(cpu, {"compile": True, "read_every": 5})
    assert chosen.compile and chosen.read_every == 5 and not chosen.channels_last
    with pytest.raises(ValueError, match=r"unknown speed switch\(es\) \['chanels_last'\]"):
        StepSpeed.configured(cpu, {"chanels_last": True})


BOOL = "must be true, false or null (the device's default)"
INT = "must be an integer >= 0 (0 = once per epoch) or null (the device's default)"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("speed.compile=yes", f"speed.compile {BOOL}, got 'yes'"),
        ("speed.compile=1", f"speed.compile {BOOL}, got 1"),
        ("speed.channels_last=off", f"speed.channels_last {BOOL}, got 'off'"),
        ("speed.read_every=abc", f"speed.read_every {INT}, got 'abc'"),
        ("speed.read_every=true", f"speed.read_every {INT}, got True"),
    ],
)
def test_item8_a_speed_switch_of_the_wrong_type_is_refused_when_the_config_is_read(
    override: str, message: str
) -> None:
    """The grid pre-check reads every cell's config this way (stage_launcher.plan): nothing is
    queued; before, any string turned compile on."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        config = compose("config", overrides=[override])
    with pytest.raises(ValueError) as refused:
        spec_from_config(config)
    assert str(refused.value) == message


def test_item8_booleans_and_null_still_configure_compile() -> None:
    assert StepSpeed.configured(CPU, {"compile": True}).compile
    assert not StepSpeed.configured(CPU, {"compile": False, "read_every": None}).compile
    assert StepSpeed.configured(CPU, {"compile": None}) == StepSpeed.auto(CPU)
