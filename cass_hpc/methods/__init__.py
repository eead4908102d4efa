"""Pretraining methods: small plug-ins behind one protocol (`base.PretrainMethod`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cass_hpc.methods.base import PretrainMethod, StepOutput
from cass_hpc.methods.cass import CASS, cass_loss

# name -> builder taking the arms by name. "supervised" has no pretraining stage.
PRETRAIN_METHODS: dict[str, Callable[[dict[str, nn.Module]], PretrainMethod]] = {
    "cass": lambda arms: CASS(cnn=arms["cnn"], vit=arms["vit"]),
}

__all__ = ["CASS", "PRETRAIN_METHODS", "PretrainMethod", "StepOutput", "cass_loss"]
