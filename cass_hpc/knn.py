"""Label-free health monitor of a pretraining: a cosine k-NN classifier on the validation split.

During self-supervised pretraining nothing says whether the nets learn anything useful; the loss
of a collapsed CASS run is at its best. The standard read-out of SSL papers that needs no
training is a weighted k-nearest-neighbour classifier on frozen features (Wu et al., "Unsupervised
Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018; Caron et al., DINO,
ICCV 2021, §4.1: k = 20, votes weighted ``exp(cos / 0.07)``). We score it by leave-one-out on the
validation split alone — its labels are the ones fine-tuning already uses for early stopping,
never the training split's, so a 1 % cell stays honest — as balanced accuracy (mean per-class
recall): chance is ``1 / classes`` whatever the class balance, so a collapsed net, whose
neighbours are arbitrary, scores at chance. Multi-label: the mean over labels of the per-label
balanced accuracy of the neighbours' weighted vote (chance 0.5).

Features are what fine-tuning keeps: each arm's pooled pre-logits (``Arm.features``),
L2-normalised. Cosines are compared at half precision's resolution, so a net whose features all
point one way (a collapsed CASS ViT: every pairwise cosine above 0.9997 on the demo) scores at
chance rather than on the rounding noise of its features (:func:`knn_score`).

It also scores the starting weights: a pretraining's epoch 0 (``pretrain.py``), and for a cell
without pretraining (supervised) the weights fine-tuning starts from (``cell.py``). Pretraining
that ends below that yardstick made the features worse.

Usage::

    monitor = KnnMonitor(val_loader, k=20)
    scores = monitor.score(arms, accelerator)   # {"cnn": 0.61, "vit": 0.27}
    monitor = validation_monitor(val_dataset, seed=0)   # or None, with a warning: too few images
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from cass_hpc.data.loader import make_loader
from cass_hpc.models import Arm

log = logging.getLogger(__name__)
KEEP = ("last", "best_knn")
DEFAULT_K = 20  # neighbours (DINO's k-NN; pretrain.knn_k's default)
RESOLUTION = 1e-3  # cosines closer than this are equal (half precision near 1: 2^-10)


def chance_level(labels: np.ndarray) -> float:
    """The balanced accuracy of a classifier that ignores the image: ``1 / classes`` for class
    indices, 0.5 for multi-hot rows."""
    return 0.5 if labels.ndim == 2 else 1.0 / max(int(labels.max()) + 1, 1)


def knn_score(
    features: Tensor,
    labels: np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
    resolution: float = RESOLUTION,
) -> float:
    """Leave-one-out balanced accuracy of a weighted cosine k-NN classifier on ``features``.

    ``features`` is ``(n, dim)``, ``labels`` class indices ``(n,)`` or multi-hot ``(n, classes)``.
    Each sample is classified by its ``min(k, n - 1)`` most cosine-similar *other* samples, each
    voting with weight ``exp(cos / temperature)`` (DINO's k-NN, Caron et al. 2021), with two
    changes that make a collapsed net score at chance instead of reading structure into noise:
    cosines are rounded to ``resolution`` (1e-3 ≈ half precision's step near 1: the nets run in
    fp16/bf16 under AMP, so smaller differences are rounding, not structure), neighbours tied
    with the k-th are all kept, and each class's votes are divided by its size among the other
    samples (so a sample's own class is not outvoted just because it is left out). A net whose
    features all point one way then gives every class the same vote: balanced accuracy
    ``1 / classes``. Returns the balanced accuracy in [0, 1].

    >>> x = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    >>> knn_score(x, np.array([0, 0, 1, 1]), k=1)
    1.0
    >>> knn_score(torch.ones(6, 3), np.array([0, 0, 1, 1, 2, 2]))  # collapsed: chance
    0.3333333333333333
    """
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] != len(labels):
        raise ValueError(
            f"knn_score needs (n, dim) features for n labels, got {tuple(features.shape)} "
            f"for {len(labels)} labels"
        )
    if len(labels) < 2 or k < 1:
        raise ValueError(f"knn_score needs >= 2 samples and k >= 1, got {len(labels)} and k={k}")
    z = F.normalize(features.detach().double().cpu(), dim=-1, eps=1e-12)
    sims = torch.round(z @ z.T / resolution) * resolution
    sims.fill_diagonal_(-math.inf)  # leave one out
    kth = sims.topk(min(k, len(labels) - 1), dim=1).values[:, -1:]
    weights = torch.where(sims >= kth, (sims / temperature).exp(), torch.zeros_like(sims))
    multilabel = labels.ndim == 2
    onehot = (
        torch.as_tensor(labels, dtype=torch.float64)
        if multilabel
        else F.one_hot(torch.as_tensor(labels, dtype=torch.long), int(labels.max()) + 1).double()
    )
    others = onehot.sum(0, keepdim=True) - onehot  # each class's size without the sample itself
    if multilabel:  # per label: the weighted vote of the present vs absent, each per its size
        present = (weights @ onehot) / others.clamp(min=1)
        absent = (weights @ (1 - onehot)) / (len(labels) - 1 - others).clamp(min=1)
        predicted = (present > absent * (1 + 1e-9)).numpy()  # a tie is "absent"
        return float(
            np.mean([_balanced(labels[:, c], predicted[:, c], 2) for c in range(labels.shape[1])])
        )
    votes = (weights @ onehot) / others.clamp(min=1)
    tied = votes >= votes.max(1, keepdim=True).values * (1 - 1e-9)  # equal but for rounding
    return _balanced(labels, tied.double().argmax(1).numpy(), onehot.shape[1])  # first of a tie


def _balanced(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    """Mean recall over the classes present in ``truth``."""
    truth = truth.astype(np.int64)
    recalls = [
        float((predicted[truth == c] == c).mean()) for c in range(classes) if (truth == c).any()
    ]
    return float(np.mean(recalls))


class KnnMonitor:
    """Scores each arm's features on one labelled loader (the validation split, no augmentation)."""

    def __init__(self, loader: DataLoader, k: int = DEFAULT_K, temperature: float = 0.07) -> None:
        if k < 1:
            raise ValueError(f"pretrain.knn_k must be >= 1, got {k}")
        self.loader, self.k, self.temperature = loader, k, temperature
        # an evaluation loader reads its dataset in order: take the labels without decoding images
        labels = getattr(loader.dataset, "labels", None)
        self.labels = (
            np.asarray(labels)
            if labels is not None
            else np.concatenate([np.asarray(y) for _, y in loader])
        )
        if len(self.labels) < 2:
            raise ValueError(
                f"the k-NN monitor needs >= 2 validation images, the split has {len(self.labels)}"
                "; set pretrain.knn_every=0"
            )
        self.index: np.ndarray | None = None  # the images scored (None: all)
        self.left_out: list[int] = []  # classes with one validation image: not scorable
        if self.labels.ndim == 1:
            self._scorable_classes()
        self.chance = chance_level(self.labels)

    def _scorable_classes(self) -> None:
        """Leave-one-out cannot score a class with one validation image (its image has no
        neighbour of its class: recall 0 whatever the net); leave such classes out, and refuse
        when fewer than 2 classes are left (the monitor would say nothing)."""
        counts = np.bincount(self.labels.astype(np.int64))
        scored = np.flatnonzero(counts >= 2)
        if len(scored) < 2:
            raise ValueError(
                f"the k-NN monitor (leave-one-out) needs >= 2 classes with >= 2 validation images "
                f"each; the validation split has {counts.tolist()} image(s) per class"
            )
        self.left_out = [int(c) for c in np.flatnonzero(counts == 1)]
        if self.left_out:
            self.index = np.flatnonzero(counts[self.labels] >= 2)
            remap = np.full(len(counts), -1)
            remap[scored] = np.arange(len(scored))
            self.labels = remap[self.labels[self.index]]

    @torch.no_grad()
    def embed(self, arm: Arm, accelerator: Accelerator) -> Tensor:
        """The arm's pooled features of every image of the loader, in eval mode (restored)."""
        was_training = arm.training
        arm.eval()
        chunks = []
        for images, _ in self.loader:
            with accelerator.autocast():
                chunks.append(arm.features(images.to(accelerator.device)).float().cpu())
        arm.train(was_training)
        return torch.cat(chunks)

    def score(self, arms: Mapping[str, Arm], accelerator: Accelerator) -> dict[str, float]:
        scores = {}
        for name, arm in arms.items():
            features = self.embed(arm, accelerator)
            if self.index is not None:
                features = features[torch.as_tensor(self.index)]
            scores[name] = knn_score(features, self.labels, self.k, self.temperature)
        return scores


def validation_monitor(
    val: Dataset, seed: int, k: int = DEFAULT_K, class_names: Sequence[str] = ()
) -> KnnMonitor | None:
    """The monitor on the validation split ``val`` (unaugmented), read in order 64 images at a
    time; None, with a warning, when the split has too few images to score (keep=best_knn is
    then refused by ``pretrain``). Classes with one validation image are left out, with a
    warning naming them (``class_names``: the manifest's, by index)."""
    try:
        monitor = KnnMonitor(make_loader(val, 64, train=False, seed=seed, workers=0), k)
    except ValueError as why:
        log.warning("the k-NN monitor is off: %s", why)
        return None
    if monitor.left_out:
        names = [class_names[c] if c < len(class_names) else str(c) for c in monitor.left_out]
        why = "one validation image each (leave-one-out needs 2)"
        log.warning("the k-NN monitor leaves out class(es) %s: %s", names, why)
    return monitor


def start_scores(
    val: Dataset,
    arms: Mapping[str, Arm],
    accelerator: Accelerator,
    seed: int,
    class_names: Sequence[str] = (),
) -> dict[str, float] | None:
    """``{arm: score, ..., "chance": 1 / classes}`` of the weights ``arms`` hold now (moved to
    the accelerator's device), on the validation split ``val`` with the default k: the
    yardstick of a cell that fine-tunes without pretraining. None when the monitor is off."""
    monitor = validation_monitor(val, seed, DEFAULT_K, class_names)
    if monitor is None:
        return None
    moved = {name: arm.to(accelerator.device) for name, arm in arms.items()}
    scores = {**monitor.score(moved, accelerator), "chance": monitor.chance}
    log.info("k-NN of the starting weights: %s", scores)
    return scores
