"""The ImageNet weights a grid starts from (``init=imagenet``): fetch them on a login node, then
list and verify them offline. The only module of the toolkit that may reach a model hub.

    python -m cass_hpc.weights fetch experiment=paper model=paper_pair init=imagenet
    python -m cass_hpc.weights list  experiment=paper model=paper_pair init=imagenet
    python -m cass_hpc.weights verify experiment=paper model=paper_pair init=imagenet
    python -m cass_hpc.weights fetch --tag resnet50.a1_in1k       # one tag, no grid

The overrides are those ``python -m cass_hpc.run -m`` gets: every arm of the grid (sweeps of
``model=...`` included) whose ``init`` is imagenet names a timm pretrained tag; ``fetch``
downloads exactly those files into the Hugging Face cache (``HF_HUB_CACHE``/``HF_HOME``, the same
the jobs read) and records each file's sha256 in a manifest (``CASS_WEIGHTS_MANIFEST``, default
``$HF_HOME/cass-hpc-weights.json``); ``verify`` hashes the cached files against it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cass_hpc import store
from cass_hpc.models import ArmSpec
from cass_hpc.overrides import check_command_line
from cass_hpc.pretrained import HubSource, cached_file, hub_cache, hub_source, imagenet_tag, sha256

CONF = Path(__file__).resolve().parents[1] / "conf"
# the overrides that decide a grid's starting weights: the nets, their init, and which arms a
# cell starts from (a per-arm method or supervised: its arm; a pair method: both)
ARM_KEYS = ("model", "init", "weights", "method", "arm")


class WeightsError(Exception):
    """One line for the user; the command exits 1."""


@dataclass(frozen=True)
class Wanted:
    """One tag a grid starts from, and the arms (``cnn``/``vit``) that use it."""

    tag: str
    arms: tuple[str, ...]


def manifest_path() -> Path:
    """Where ``fetch`` records what it fetched (beside the user's Hugging Face cache)."""
    if path := os.environ.get("CASS_WEIGHTS_MANIFEST"):
        return Path(path).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "cass-hpc-weights.json"


def grid_arms(overrides: Sequence[str]) -> list[tuple[str, ArmSpec]]:
    """Every distinct (arm, ArmSpec) that a cell of the grid ``overrides`` describe starts from
    (command-line sweeps and the experiment's ``hydra.sweeper.params`` of the :data:`ARM_KEYS`
    expanded): ``method=dino arm=cnn`` needs the CNN's weights only."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from cass_hpc.methods import method_entry

    parser = OverridesParser.create()
    parsed = parser.parse_overrides([o for o in overrides if o not in ("-m", "--multirun")])
    fixed = [
        o.input_line for o in parsed if not o.is_sweep_override() and not o.is_hydra_override()
    ]
    sweeps = {o.key_or_group: o for o in parsed if o.is_sweep_override()}
    found: dict[str, tuple[str, ArmSpec]] = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = compose("config", fixed, return_hydra_config=True)
        swept = OmegaConf.select(base, "hydra.sweeper.params") or {}
        on_line = {o.key_or_group for o in parsed}
        for key, text in swept.items():  # an experiment's sweep, unless the command line set it
            if key not in on_line:
                sweeps[key] = parser.parse_overrides([f"{key}={text}"])[0]
        options = [
            [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
            for key, o in sweeps.items()
            if key.split(".")[0].split("/")[0] in ARM_KEYS
        ]
        for combination in itertools.product(*options):
            cfg = compose("config", [*fixed, *combination])
            model = OmegaConf.to_container(cfg.model, resolve=True)
            assert isinstance(model, dict)
            entry = method_entry(str(cfg.method.name))
            pair = entry.pretrains and not entry.per_arm
            for arm in ("cnn", "vit") if pair else (str(cfg.arm),):
                found[json.dumps([arm, model[arm]], sort_keys=True)] = (arm, ArmSpec(**model[arm]))
    return list(found.values())


def wanted(overrides: Sequence[str], tags: Sequence[str]) -> list[Wanted]:
    """The tags to fetch/list/verify: ``--tag``s, else the grid's imagenet arms (cache-read:
    an arm given its own file, ``weights.<arm>=FILE``, needs nothing from the cache)."""
    if tags:
        return [Wanted(tag, ()) for tag in dict.fromkeys(tags)]
    arms: dict[str, list[str]] = {}
    for arm, spec in grid_arms(overrides):
        if spec.source == "imagenet" and not spec.pretrained:
            arms.setdefault(imagenet_tag(arm, spec), []).append(arm)
    if not arms:
        raise WeightsError(
            f"no arm of this grid ({' '.join(overrides) or 'the defaults'}) starts from the "
            f"Hugging Face cache: add init=imagenet (or name one with --tag)"
        )
    return [Wanted(tag, tuple(sorted(set(a)))) for tag, a in arms.items()]


def fetch(items: Sequence[Wanted]) -> dict[str, dict]:
    """Download each tag's weights file into the cache and record it in the manifest; the
    manifest is written (atomically) only when every tag was fetched."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise WeightsError(
            "HF_HUB_OFFLINE is set in this environment: fetch needs the hub (run it where the "
            "internet is reachable, as HF_HUB_OFFLINE=0 python -m cass_hpc.weights fetch ...)"
        )
    sources = {item.tag: hub_source(item.tag) for item in items}  # unknown tags: before the net
    _reachable(constants.ENDPOINT)
    entries = {}
    for tag, source in sources.items():
        path = _download(source)
        entries[tag] = {
            "repo_id": source.repo_id, "revision": path.parent.name, "filename": path.name,
            "sha256": sha256(path), "size": path.stat().st_size,
            "fetched": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        print(f"fetched {tag}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    manifest = read_manifest()
    manifest.update(entries)
    store.write_json(manifest_path(), manifest)
    print(f"recorded {len(entries)} file(s) in {manifest_path()}")
    return entries


def _reachable(endpoint: str, timeout_s: float = 10.0) -> None:
    """One quick connection to the hub first: without a network the hub client would retry
    each file for about a minute before saying so."""
    url = urllib.parse.urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
    except OSError as err:
        raise WeightsError(
            f"cannot reach {endpoint} ({err.strerror or err}): fetch needs the internet; run it "
            f"on a machine that has it (a login node), with the HF_HOME the jobs use"
        ) from None


def _download(source: HubSource) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    for filename in source.filenames:
        try:
            return Path(hf_hub_download(source.repo_id, filename, revision=source.revision))
        except RemoteEntryNotFoundError:  # the repository has the other format
            continue
        except LocalEntryNotFoundError as err:  # the hub did not answer, and it is not cached
            raise WeightsError(f"cannot fetch {source.repo_id} ({filename}): {err}") from None
        except Exception as err:  # noqa: BLE001 - no network, proxy, auth: all mean "cannot fetch"
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise WeightsError(
                f"cannot fetch {source.repo_id} ({filename}) from the hub: {reason}; run fetch on "
                f"a machine with internet (a login node), with the HF_HOME the jobs use"
            ) from None
    raise WeightsError(f"{source.repo_id} has none of {', '.join(source.filenames)}")


def read_manifest() -> dict[str, dict]:
    path = manifest_path()
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"{path}: unreadable weights manifest ({err})") from None
    if not isinstance(manifest, dict):
        raise WeightsError(f"{path}: not a weights manifest (expected a JSON object)")
    return manifest


def check(items: Sequence[Wanted], *, hash_files: bool) -> list[list[str]]:
    """One row per tag: tag, arms, state, file. ``hash_files``: compare each cached file's
    sha256 with the manifest's (``verify``); else only say whether it is cached (``list``)."""
    manifest = read_manifest() if hash_files else {}
    rows = []
    for item in items:
        found = cached_file(hub_source(item.tag))
        if found is None:
            state = "missing"
        elif not hash_files:
            state = "cached"
        elif item.tag not in manifest:
            state = "not in manifest (fetched by another tool? fetch again to record it)"
        elif manifest[item.tag].get("sha256") != sha256(found):
            state = "sha256 MISMATCH (corrupt or replaced: fetch again)"
        else:
            state = "ok"
        rows.append([item.tag, ",".join(item.arms) or "-", state, str(found or "-")])
    return rows


def _print(rows: list[list[str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("tag", "arms", "state", "file"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=max(120, Console().width)).print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.weights",
        description="Fetch (login node, online), list and verify (offline) the ImageNet weights "
        "a grid starts from with init=imagenet. Jobs never download: they read the Hugging Face "
        "cache (HF_HUB_CACHE / HF_HOME) these commands fill and check.",
        epilog="example: python -m cass_hpc.weights fetch experiment=paper model=paper_pair "
        "init=imagenet",
    )
    parser.add_argument("command", choices=("fetch", "list", "verify"))
    parser.add_argument("overrides", nargs="*", help="the grid's overrides, as for run -m")
    parser.add_argument(
        "--tag", action="append", default=[], help="a timm pretrained tag (repeatable), no grid"
    )
    argv = sys.argv[1:] if argv is None else list(argv)  # a pasted `run -m` line: -m is implied
    args = parser.parse_args([a for a in argv if a not in ("-m", "--multirun")])
    try:  # a mistyped key or group choice: the line `run` gives, before Hydra's own
        check_command_line([o for o in args.overrides if o not in ("-m", "--multirun")], CONF)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        items = wanted(args.overrides, args.tag)
        if args.command == "fetch":
            fetch(items)
            return 0
        rows = check(items, hash_files=args.command == "verify")
        what = "cache"
        if args.command == "verify":
            found = manifest_path().exists()
            what = f"verified against {manifest_path()}" + ("" if found else ", not written yet")
        _print(rows, f"weights in {hub_cache()} ({what})")
        bad = [r for r in rows if r[2] not in ("ok", "cached")]
        if bad:
            again = " ".join(["python -m cass_hpc.weights fetch", *args.overrides,
                              *(f"--tag {t}" for t in args.tag)])  # fmt: skip
            print(f"error: {len(bad)} of {len(rows)} weight file(s) not usable; fetch: {again}",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    except (WeightsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - Hydra's composition errors: one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"error: {first}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
