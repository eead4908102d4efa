"""Training batches are a pure function of (seed, epoch, position): skipping batches or adding
workers changes nothing, so a job stopped mid-epoch resumes onto the same batches."""

from __future__ import annotations

from pathlib import Path

import torch

from cass_hpc.data.dataset import ShardDataset
from cass_hpc.data.loader import EpochSampler, make_loader, set_position
from cass_hpc.data.shards import read_manifest
from cass_hpc.data.transforms import paper_augmentation


def batches(loader, epoch: int, start: int = 0) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    set_position(loader, epoch, start)
    return [views for views, _ in loader]


def test_each_epoch_has_its_own_order_and_a_start_skips_exactly_those_indices() -> None:
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(2)
    second = list(sampler)
    assert sorted(i for _, i in first) == list(range(10)) and {e for e, _ in first} == {1}
    assert [i for _, i in first] != [i for _, i in second]
    sampler.set_epoch(1, start=4)
    assert list(sampler) == first[4:] and len(sampler) == 10


def test_skipped_batches_and_worker_count_leave_the_other_batches_identical(
    tiny_dataset: Path,
) -> None:
    data = ShardDataset(read_manifest(tiny_dataset), "train", paper_augmentation(16))
    serial = make_loader(data, 4, train=True, seed=0, workers=0)
    full = batches(serial, epoch=2)
    assert len(full) == len(serial) == len(data) // 4
    resumed = batches(serial, epoch=2, start=3)
    assert all(torch.equal(a, b) for a, b in zip(full[3:], resumed, strict=True))
    assert not torch.equal(batches(serial, epoch=1)[0], full[0])  # a new epoch, new draws
    parallel = make_loader(data, 4, train=True, seed=0, workers=2)
    assert all(torch.equal(a, b) for a, b in zip(full, batches(parallel, 2), strict=True))


def test_loading_does_not_touch_the_global_generator(tiny_dataset: Path) -> None:
    data = ShardDataset(read_manifest(tiny_dataset), "train", paper_augmentation(16))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    batches(make_loader(data, 4, train=True, seed=0, workers=0), epoch=1)
    assert torch.equal(torch.get_rng_state(), before)
