"""Pretraining methods: small plug-ins behind one protocol (`base.PretrainMethod`).

A method is registered with a builder that takes the backbone specs it pretrains, the CASS head
width and its own ``params`` (``conf/method/<name>.yaml``, checked by its ``config`` dataclass
before anything is submitted). ``per_arm`` methods (DINO, SimCLR, VICReg, BYOL, MAE) pretrain
each backbone in its own run; CASS pretrains the pair in one; ``arms`` limits which arms a
method can pretrain (MAE: ViTs). "supervised" has no pretraining. ``METHODS`` is the only place
that says so.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from cass_hpc.fields import check_types
from cass_hpc.methods.base import PretrainMethod, Progress, StepOutput
from cass_hpc.methods.byol import BYOL, BYOLConfig
from cass_hpc.methods.cass import CASS, CASSConfig, cass_loss
from cass_hpc.methods.cass_plus import CASSPlus, CASSPlusConfig
from cass_hpc.methods.dino import DINO, DINOConfig, dino_loss
from cass_hpc.methods.mae import MAE, MAEConfig, check_vit
from cass_hpc.methods.simclr import SimCLRConfig, build_simclr
from cass_hpc.methods.vicreg import VICRegConfig, build_vicreg
from cass_hpc.models import Arm, ArmSpec, build_arm, meta_net


def build_cass(arms: Mapping[str, ArmSpec], out_dim: int, params: Mapping[str, Any]) -> CASS:
    if set(arms) != {"cnn", "vit"}:
        raise ValueError(f"CASS needs the arms cnn and vit, got {sorted(arms)}")
    nets = {a: build_arm(s, num_classes=out_dim, arm=a) for a, s in arms.items()}
    return CASS(cnn=nets["cnn"], vit=nets["vit"], cfg=CASSConfig(**params))


def build_cass_plus(
    arms: Mapping[str, ArmSpec], out_dim: int, params: Mapping[str, Any]
) -> CASSPlus:
    if set(arms) != {"cnn", "vit"}:
        raise ValueError(f"CASS+ needs the arms cnn and vit, got {sorted(arms)}")
    nets = {a: build_arm(s, num_classes=0, arm=a) for a, s in arms.items()}  # pooled
    return CASSPlus(cnn=nets["cnn"], vit=nets["vit"], cfg=CASSPlusConfig(**params))


def build_dino(arms: Mapping[str, ArmSpec], out_dim: int, params: Mapping[str, Any]) -> DINO:
    if len(arms) != 1:
        raise ValueError(f"DINO pretrains one backbone per run, got {sorted(arms)}")
    ((arm, spec),) = arms.items()
    cfg = DINOConfig(**params)
    backbone = build_arm(spec, num_classes=0, dynamic_size=True, arm=arm)  # crops of 2 sizes
    return DINO(arm, backbone, backbone.net.num_features, cfg)


def one_arm(
    make: Callable[[str, Arm, Any], PretrainMethod], config: type
) -> Callable[[Mapping[str, ArmSpec], int, Mapping[str, Any]], PretrainMethod]:
    """The builder of a per-arm method ``make(arm, backbone, config(**params))`` (pooled
    features: the method puts its own head on the backbone)."""

    def build(
        arms: Mapping[str, ArmSpec], out_dim: int, params: Mapping[str, Any]
    ) -> PretrainMethod:
        if len(arms) != 1:
            raise ValueError(f"this method pretrains one backbone per run, got {sorted(arms)}")
        ((arm, spec),) = arms.items()
        cfg = config(**params)
        return make(arm, build_arm(spec, num_classes=0, arm=arm), cfg)

    return build


@dataclass(frozen=True)
class MethodEntry:
    """The one answer to "does this method pretrain, and per arm?" (YAML, cells and reports
    ask here, or read the ``arms`` a pretraining recorded)."""

    build: Callable[[Mapping[str, ArmSpec], int, Mapping[str, Any]], PretrainMethod] | None
    per_arm: bool = False  # one pretraining run per backbone (DINO) or one for the pair (CASS)
    config: type | None = None  # the dataclass of its params (checked before anything runs)
    arms: tuple[str, ...] | None = None  # the arms it can pretrain; None: any
    check_net: Callable[[Any, Any], None] | None = None  # (net on the meta device, config)

    def check(self, name: str, arm: str, params: Mapping[str, Any], net: ArmSpec) -> None:
        """ValueError for params its config refuses, an arm it cannot pretrain, or a net it
        cannot pretrain (built on the meta device: no memory, no weights)."""
        if self.arms is not None and arm not in self.arms:
            only = " and ".join(self.arms)
            raise ValueError(
                f"method={name} pretrains the {only} arm only, got arm={arm} (add arm={only})"
            )
        if self.config is None:
            return
        check_types("method.params.", self.config, dict(params))  # `xyz` for a number
        try:
            cfg = self.config(**params)
        except TypeError as err:  # an unknown key
            raise ValueError(f"method.params of {name}: {err}") from None
        if self.check_net is not None:
            self.check_net(meta_net(net), cfg)

    def check_build(
        self, name: str, arms: Mapping[str, ArmSpec], out_dim: int, params: Mapping[str, Any]
    ) -> None:
        """Build the method with ``arms`` on the meta device (structure only: no memory, no
        weights read), once per distinct configuration; ValueError naming the net or the method
        and the value when something refuses to be built (an unknown timm name, a kwarg timm or
        a head rejects, a width that does not fit)."""
        structure = {arm: dataclasses.replace(s, init="random", pretrained=None, tag=None)
                     for arm, s in arms.items()}  # fmt: skip
        for arm, spec in structure.items():
            meta_net(spec, arm)
        if self.build is not None:
            text = json.dumps([name, {a: dataclasses.asdict(s) for a, s in structure.items()},
                               out_dim, dict(params)], sort_keys=True, default=str)  # fmt: skip
            _meta_build(self.build, name, text)

    @property
    def pretrains(self) -> bool:
        return self.build is not None


@functools.lru_cache(maxsize=64)
def _meta_build(build: Callable[..., PretrainMethod], name: str, text: str) -> None:
    _, arms, out_dim, params = json.loads(text)
    specs = {arm: ArmSpec(**spec) for arm, spec in arms.items()}
    try:
        with torch.device("meta"):
            build(specs, out_dim, params)
    except ValueError:
        raise
    except Exception as err:  # a module that refuses its sizes raises anything
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"method={name} cannot be built with method.params {params}: "
            f"{type(err).__name__}: {first}"
        ) from None


METHODS: dict[str, MethodEntry] = {
    "cass": MethodEntry(build_cass, config=CASSConfig),
    "cass_plus": MethodEntry(build_cass_plus, config=CASSPlusConfig),  # ours: CASS, no collapse
    "dino": MethodEntry(build_dino, per_arm=True, config=DINOConfig),
    "simclr": MethodEntry(one_arm(build_simclr, SimCLRConfig), True, SimCLRConfig),
    "vicreg": MethodEntry(one_arm(build_vicreg, VICRegConfig), True, VICRegConfig),
    "byol": MethodEntry(one_arm(BYOL, BYOLConfig), True, BYOLConfig),
    "mae": MethodEntry(one_arm(MAE, MAEConfig), True, MAEConfig, ("vit",), check_vit),
    "supervised": MethodEntry(None),  # fine-tuning from random, ImageNet or local init only
}
PRETRAIN_METHODS = {name: m for name, m in METHODS.items() if m.pretrains}


def method_entry(name: str) -> MethodEntry:
    """The registry entry of ``name``; ValueError listing the known methods otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]


__all__ = [
    "BYOL", "CASS", "MAE", "CASSPlus", "DINO", "METHODS", "PRETRAIN_METHODS", "MethodEntry",
    "PretrainMethod", "Progress", "StepOutput", "cass_loss", "dino_loss", "method_entry",
]  # fmt: skip
