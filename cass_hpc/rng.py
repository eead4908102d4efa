"""Every random state a run depends on, captured into (and restored from) a checkpoint, so a
job killed or preempted between epochs resumes onto exactly the trajectory it would have taken."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture(*generators: torch.Generator | None) -> dict[str, Any]:
    """Python, NumPy and torch (CPU, CUDA) global states, plus the given generators (e.g. a
    DataLoader's, which draws each epoch's shuffle and worker seeds). Plain types and tensors
    only, so ``torch.load(weights_only=True)`` reads it back."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() if g is not None else None for g in generators],
    }


def restore(state: dict[str, Any], *generators: torch.Generator | None) -> None:
    """Inverse of :func:`capture` (same generators, same order)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for generator, saved in zip(generators, state["generators"], strict=True):
        if generator is not None and saved is not None:
            generator.set_state(saved)
