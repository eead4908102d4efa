"""Where an arm's starting weights come from, offline: the Hugging Face cache or a named file.

The paper starts every net from ImageNet weights loaded by timm (App. D.4: "We use ImageNet
initialized CNN and Transformers ... We use Timm's library"). On a cluster those weights are
fetched once into the Hugging Face cache on a login node (``python -m cass_hpc.weights fetch``,
the only code that reaches a hub) and every job reads them from there with the hub switched off
(:func:`go_offline`). This module finds the cached file of a timm pretrained tag
(``resnet50.a1_in1k``) without any network call, names what is missing, and gives each
starting file its identity (sha256) for the run store's keys and records. Usage::

    weights = starting_weights("cnn", ArmSpec("resnet50", tag="resnet50.a1_in1k", init="imagenet"))
    weights.file, weights.sha256, weights.label   # .../model.safetensors, 'ab12…', 'imagenet:…'
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # models.py imports this module
    from cass_hpc.models import ArmSpec

# Every stage runs with the hub switched off (huggingface_hub, timm, transformers, datasets).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# what timm's hub loader looks for, in its order (timm.models._hub: safetensors first)
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
INITS = ("random", "imagenet", "local")


def go_offline() -> None:
    """Switch the Hugging Face hub off in this process and the processes it starts.

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import: where it is already imported, its
    constant is switched off too, so no later call in this process can reach a hub.
    """
    os.environ.update(OFFLINE_ENV)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]


def hub_cache() -> Path:
    """The Hugging Face hub cache this process reads (``HF_HUB_CACHE``, else ``HF_HOME``/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def fetch_command(*tags: str) -> str:
    """The command that puts the ``tags``' weights into the cache, on a machine with internet."""
    return "python -m cass_hpc.weights fetch" + "".join(f" --tag {tag}" for tag in tags)


class MissingWeightsError(ValueError):
    """An ``init=imagenet`` arm whose tag is not in the Hugging Face cache."""

    def __init__(self, arms: dict[str, str]) -> None:  # arm -> tag
        self.arms = arms
        which = " and ".join(f"the {arm} arm's weights ({tag})" for arm, tag in arms.items())
        super().__init__(
            f"init=imagenet: {which} are not in the Hugging Face cache {hub_cache()} "
            f"(HF_HUB_CACHE / HF_HOME); jobs never download: on a machine with internet and the "
            f"same HF_HOME / HF_HUB_CACHE run: {fetch_command(*dict.fromkeys(arms.values()))} "
            f"(or weights fetch with this grid's overrides)"
        )


def starting_records(arms: dict[str, ArmSpec]) -> dict[str, dict[str, str | None]]:
    """Per arm: init (random, imagenet:<tag>, local:<path>), file, sha256 (results.json)."""
    return {arm: starting_weights(arm, spec).record() for arm, spec in arms.items()}


def check_starting_weights(arms: dict[str, ArmSpec]) -> None:
    """Every arm's starting weights are here (:func:`starting_weights`); the arms missing from
    the cache are named together in one MissingWeightsError, so one fetch fixes them all."""
    missing: dict[str, str] = {}
    for arm, spec in arms.items():
        try:
            starting_weights(arm, spec)
        except MissingWeightsError as err:
            missing.update(err.arms)
    if missing:
        raise MissingWeightsError(missing)


@dataclass(frozen=True)
class HubSource:
    """Where the hub keeps a timm pretrained tag's weights: repository and candidate files."""

    tag: str  # timm name with its pretrained tag, e.g. resnet50.a1_in1k
    repo_id: str  # e.g. timm/resnet50.a1_in1k
    revision: str | None  # None = the repository's main branch
    filenames: tuple[str, ...]  # in the order timm tries them


def hub_source(tag: str) -> HubSource:
    """timm's pretrained config of ``tag`` as a hub location; ValueError for an unknown tag."""
    import timm
    from timm.models import get_pretrained_cfg

    name, _, pretrained = tag.partition(".")
    try:
        cfg = get_pretrained_cfg(tag) if pretrained and timm.is_model(name) else None
    except RuntimeError:  # timm: "Invalid pretrained tag (x) for name"
        cfg = None
    if cfg is None:
        known = timm.list_pretrained(f"{name}.*") if timm.is_model(name) else []
        hint = f"; timm has {', '.join(known[:6])}" if known else ""
        raise ValueError(
            f"unknown timm pretrained tag {tag!r} (expected NAME.TAG as in "
            f"timm.list_pretrained('{name}*')){hint}"
        )
    if not cfg.hf_hub_id:
        raise ValueError(
            f"timm keeps {tag!r} outside the Hugging Face hub ({cfg.url or 'no url'}): download "
            f"it yourself and name the file, e.g. weights.cnn=/models/{tag}.pth"
        )
    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_FILENAMES
    return HubSource(tag, repo_id, revision or None, filenames)


def cached_file(source: HubSource, cache: Path | None = None) -> Path | None:
    """The cached weights file of ``source``, or None; reads the cache only, never a hub."""
    from huggingface_hub import try_to_load_from_cache

    for filename in source.filenames:
        found = try_to_load_from_cache(
            source.repo_id, filename, cache_dir=cache, revision=source.revision
        )
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


@dataclass(frozen=True)
class StartingWeights:
    """One arm's starting point: what the records and keys say about it."""

    label: str  # random | imagenet:<tag> | local:<path>
    file: Path | None  # the weights file read (None: random init)
    sha256: str | None  # of that file

    def record(self) -> dict[str, str | None]:
        """The entry of results.json / nets.json ``init`` for this arm."""
        return {"init": self.label, "file": None if self.file is None else str(self.file),
                "sha256": self.sha256}  # fmt: skip


def starting_weights(arm: str, spec: ArmSpec) -> StartingWeights:
    """Resolve where ``spec`` (arm ``arm`` of the pair) starts from, offline.

    Raises ValueError, one line naming the arm, the tag, the cache searched and the command that
    fetches the weights, if ``init=imagenet`` finds nothing; or naming a missing local file.
    """
    init = spec.source
    if init == "random":
        return StartingWeights("random", None, None)
    if init == "local" and not spec.pretrained:  # only the arms a cell uses need one
        raise ValueError(
            f"init=local needs weights.{arm}=FILE: the {arm} arm's starting weights (a local "
            f"file; never downloaded)"
        )
    if spec.pretrained:  # a file the user named (init=local, or imagenet's own)
        path = Path(spec.pretrained).expanduser()
        if not path.is_file():
            raise ValueError(
                f"weights.{arm}={spec.pretrained}: no such file; init={init} needs a local "
                f"weights file (never downloaded)"
            )
        label = f"imagenet:{spec.tag}" if init == "imagenet" else f"local:{path}"
        return StartingWeights(label, path.resolve(), sha256(path))
    tag = imagenet_tag(arm, spec)
    found = cached_file(hub_source(tag))
    if found is None:
        raise MissingWeightsError({arm: tag})
    return StartingWeights(f"imagenet:{tag}", found, sha256(found))


def imagenet_tag(arm: str, spec: ArmSpec) -> str:
    """``spec.tag`` checked against ``spec.name`` (ValueError naming the config key)."""
    if not spec.tag:
        raise ValueError(
            f"init=imagenet needs model.{arm}.tag (a timm pretrained tag such as "
            f"{spec.name}.<tag>, see timm.list_pretrained('{spec.name}*')), got null"
        )
    if spec.tag.partition(".")[0] != spec.name:
        raise ValueError(
            f"model.{arm}.tag={spec.tag} is not a tag of model.{arm}.name={spec.name}; "
            f"expected {spec.name}.<tag>"
        )
    return spec.tag


def sha256(path: Path) -> str:
    """The sha256 of a weights file (hashed once per file version in a process)."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
