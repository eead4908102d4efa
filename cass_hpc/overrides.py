"""Command-line overrides checked against the composed config, before anything runs.

Hydra answers a mistyped key (``pretrain.epoch=1``) with "To append to your config use
+pretrain.epoch=1", which then composes and fails later (no such setting). ``check_overrides``
names the key and the nearest real one instead; ``check_command_line`` applies it to the
arguments of ``python -m cass_hpc.run`` before Hydra starts (and refuses a file where the run
store's folder belongs, before Hydra makes its output folder there). Usage::

    check_overrides(["pretrain.epoch=1"], cfg)
    # ValueError: unknown key pretrain.epoch; did you mean pretrain.epochs?
    #             (python -m cass_hpc.run --help lists the keys)
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

from cass_hpc.store import check_folder

HELP = "python -m cass_hpc.run --help lists the keys"
STORE_KEYS = ("runs_dir", "experiment_name")  # the run store: runs_dir/experiment_name
MAX_COMPOSED = 32  # configs composed to check one command line (one per swept group choice)


def check_overrides(
    overrides: Sequence[str], cfg: DictConfig, groups: Iterable[str] | None = None
) -> None:
    """Raise ValueError naming the first override whose key ``cfg`` lacks, and the nearest key.

    Only plain ``key=value`` overrides (sweeps ``key=a,b`` too) are checked: appends
    (``+key=``, ``++key=``), deletions (``~key``), ``hydra.*`` keys and config-group choices
    (``method=dino``, ``hydra/launcher=slurm``) pass. ``groups`` are the config groups; by
    default the choices recorded in ``cfg.hydra.runtime`` (a config composed with its hydra
    node) or in the running job's HydraConfig.
    """
    groups = set(config_groups(cfg) if groups is None else groups)
    unknown = unknown_keys(_parse(overrides), [cfg], groups)
    if unknown:
        raise ValueError(unknown_key_message(unknown[0], cfg, groups))


def unknown_keys(
    overrides: Iterable[Override], configs: Sequence[DictConfig], groups: set[str]
) -> list[str]:
    """The keys of the checked ``overrides`` (see `check_overrides`) that none of ``configs``
    has, in command-line order."""
    trees = [_tree(cfg) for cfg in configs]
    return [
        o.key_or_group
        for o in overrides
        if _checked(o, groups) and not any(_has(tree, o.key_or_group) for tree in trees)
    ]


def unknown_key_message(key: str, cfg: DictConfig, groups: Iterable[str] = ()) -> str:
    """``unknown key KEY; did you mean NEAREST? (help)``: one line, the nearest key by difflib."""
    near = nearest_key(key, cfg, groups)
    return f"unknown key {key}; " + (f"did you mean {near}? ({HELP})" if near else HELP)


def nearest_key(key: str, cfg: DictConfig, groups: Iterable[str] = ()) -> str | None:
    """The key of ``cfg`` (or config group) ``key`` most likely misspells, or None.

    A sibling when the parent exists (``pretrain.epoch`` → ``pretrain.epochs``), else the
    closest full path (``pretrian.epochs`` → ``pretrain.epochs``, ``methd`` → ``method``);
    comparing full paths alone would match any key under the same parent.
    """
    tree = _tree(cfg)
    parent, _, name = key.rpartition(".")
    if parent and _has(tree, parent):
        node = _get(tree, parent)
        siblings = list(node) if isinstance(node, dict) else []
        near = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
        return f"{parent}.{near[0]}" if near else None
    known = [*_paths(tree), *(g for g in groups if not g.startswith("hydra"))]
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return near[0] if near else None


def config_groups(cfg: DictConfig) -> list[str]:
    """The config groups chosen in ``cfg`` (``method``, ``hydra/launcher``, …), if it knows."""
    choices = OmegaConf.select(cfg, "hydra.runtime.choices")
    if choices is None and HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    return list(choices or ())


def check_command_line(argv: Sequence[str], config_dir: Path, config_name: str = "config") -> None:
    """`check_overrides` for a ``python -m cass_hpc.run`` command line, before Hydra runs it.

    The config is composed with the command line's group choices, appends and hydra settings;
    a key is known if the config of any swept group choice has it (``-m method=cass,dino``, or
    an experiment's ``hydra.sweeper.params``). Help, another config directory, and command
    lines Hydra itself cannot parse or compose are left to Hydra and its own messages.
    """
    from hydra._internal.utils import get_args_parser  # the parser hydra.main itself uses

    args, _ = get_args_parser().parse_known_args(list(argv))
    if args.help or args.hydra_help or args.shell_completion or args.info:
        return
    if args.config_path or args.config_dir or args.experimental_rerun:
        return
    name = args.config_name or config_name
    try:
        overrides = _parse(args.overrides)
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            groups = set(loader.list_groups(""))
            if bad_choice := unknown_choice(overrides, groups, loader.get_group_options):
                raise _Refused(bad_choice)
            options = [_options(o) for o in overrides if not _checked(o, groups)]
            base = compose(name, [o[0] for o in options], return_hydra_config=True)
            on_line = {o.key_or_group for o in overrides}
            swept = OmegaConf.select(base, "hydra.sweeper.params") or {}
            for key, text in swept.items():  # groups an experiment sweeps, e.g. model: a,b,c
                if key in groups and key not in on_line:
                    options.append(_options(_parse([f"{key}={text}"])[0]))
            variants = itertools.islice(_variants(options), MAX_COMPOSED - 1)
            configs = [base, *(compose(name, v, return_hydra_config=True) for v in variants)]
    except _Refused as refused:
        raise ValueError(str(refused)) from None
    except Exception:  # noqa: BLE001 - Hydra reports what it cannot parse or compose itself
        return
    unknown = unknown_keys(overrides, configs, groups)
    if unknown:
        raise ValueError(unknown_key_message(unknown[0], base, groups))
    given = {o.key_or_group: o.value() for o in overrides if not o.is_sweep_override()}
    for cfg in configs:  # Hydra makes its output folder in the run store before any check
        runs_dir, name = (given.get(k, OmegaConf.select(cfg, k)) for k in STORE_KEYS)
        if runs_dir is not None and name is not None:
            check_folder(Path(str(runs_dir)) / str(name))


class _Refused(Exception):
    """A command line refused inside the block whose other errors are left to Hydra."""


def unknown_choice(
    overrides: Iterable[Override], groups: set[str], options: Callable[[str], list[str]]
) -> str | None:
    """``unknown method 'cas'; choose from cass, cass_plus, … (did you mean cass?)`` for the
    first group choice (``method=cas``, a sweep's values too) that ``conf/`` has no file for;
    Hydra would answer with its search path, over many lines. None if every choice exists."""
    for o in overrides:
        group = o.key_or_group
        if o.type != OverrideType.CHANGE or group not in groups or o.is_hydra_override():
            continue
        known = options(group)
        for line in _options(o):
            value = line.split("=", 1)[1]
            if value in known or value in ("", "null") or "(" in value or "$" in value:
                continue
            near = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]}?)" if near else ""
            return f"unknown {group} {value!r}; choose from {', '.join(known)}{hint}"
    return None


def _parse(overrides: Iterable[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides(list(overrides))


def _checked(override: Override, groups: set[str]) -> bool:
    """Whether ``override`` sets a plain key that must already exist."""
    return not (
        override.type != OverrideType.CHANGE
        or override.is_hydra_override()
        or override.key_or_group in groups
    )


def _options(override: Override) -> list[str]:
    """``override`` as it is composed: itself, or one override per value of a sweep."""
    if not override.is_sweep_override():
        return [override.input_line]
    return [f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()]


def _variants(options: list[list[str]]) -> Iterator[list[str]]:
    """Override lists besides the first option of each: every other option, one at a time."""
    first = [choice[0] for choice in options]
    for index, choice in enumerate(options):
        for option in choice[1:]:
            yield [*first[:index], option, *first[index + 1 :]]


def _tree(cfg: DictConfig) -> Any:
    """``cfg`` as plain containers, unresolved (``???`` and ``${…}`` are values too), no hydra."""
    tree = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    return {k: v for k, v in tree.items() if k != "hydra"} if isinstance(tree, dict) else tree


_ABSENT = object()


def _get(tree: Any, key: str) -> Any:
    """The value at dotted ``key`` in plain containers (list items by index), or _ABSENT."""
    node = tree
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _ABSENT
    return node


def _has(tree: Any, key: str) -> bool:
    return _get(tree, key) is not _ABSENT


def _paths(tree: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            yield path
            yield from _paths(value, f"{path}.")
