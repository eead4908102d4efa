"""``python -m cass_hpc.export DIR OUT``: a trained net as a plain timm state dict + a JSON card.

DIR is a fine-tuned cell (``runs/<exp>/cells/<…>/``: ``results.json`` + ``model.pt``) or a
pretraining (``runs/<exp>/pretrain/<…>/``: ``pretrain.json`` + ``<arm>.pt``; ``--arm`` picks the
net when it trained two). OUT gets the weights (``torch.save`` of a state dict, or safetensors
when OUT ends in ``.safetensors``) and ``OUT`` with suffix ``.json`` the card: timm name and
kwargs, classes, input size and normalisation, and where the weights came from. OUT lies
outside every run store, and its card never takes a run-store record's name. Nothing of
cass-hpc is needed to use them::

    net = timm.create_model(card["timm_name"], num_classes=card["num_classes"],
                            checkpoint_path=OUT, **card["timm_kwargs"])
    logits = net((images_in_0_1 - mean) / std)   # mean, std from the card, per RGB channel

A pretraining's classifier (CASS's projection head) is dropped: its export is a backbone
(``num_classes`` 0) to fine-tune with ``net.reset_classifier(K)``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import timm
import torch

from cass_hpc import store
from cass_hpc.cell import CELL_FILES, PRETRAIN_NETS
from cass_hpc.jobstate import STATE_FILE
from cass_hpc.models import normalisation, read_state_dict

CARD_SCHEMA = "cass-hpc-export/1"
EXIT_OK, EXIT_USAGE = 0, 2
STAGE_RECORDS = ("results.json", "pretrain.json", PRETRAIN_NETS, STATE_FILE)  # mark a stage folder
RESERVED_CARDS = {*STAGE_RECORDS, "manifest.json"}  # names a card must never take (+ a dataset's)
STAGE_KINDS = ("cells", "pretrain")  # <run store>/<kind>/<stage folder>


def load_source(directory: Path, arm: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights of the net in ``directory`` and its card (without the file fields).

    Raises ``ValueError`` naming the folder and what it lacks."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} does not exist or is not a folder")
    if (directory / "results.json").is_file():
        return _from_cell(directory, arm)
    if (directory / "pretrain.json").is_file():
        return _from_pretraining(directory, arm)
    raise ValueError(
        f"{directory}: neither a fine-tuned cell (results.json) nor a pretraining "
        f"(pretrain.json); give a folder under runs/<experiment>/cells or …/pretrain"
    )


def _from_cell(directory: Path, arm: str | None) -> tuple[dict[str, torch.Tensor], dict]:
    record = store.read_json(directory / "results.json")
    weights = directory / record.get("files", {}).get("weights", CELL_FILES["weights"])
    if not weights.is_file() or "backbone_kwargs" not in record:
        raise ValueError(
            f"{directory}: the cell kept no weights ({weights.name} missing): it was run by a "
            f"version before cells kept them; run the cell again to export it"
        )
    if arm is not None and arm != record["arm"]:
        raise ValueError(f"--arm {arm}: the cell {directory.name} fine-tuned {record['arm']!r}")
    card = {
        "timm_name": record["backbone"],
        "timm_kwargs": record["backbone_kwargs"],
        "num_classes": len(record["classes"]),
        "classes": record["classes"],
        "multilabel": bool(record.get("multilabel", False)),
        "threshold": record.get("threshold") if record.get("multilabel") else None,
        "image_size": record["image_size"],
        "source": {
            "kind": "fine-tuned cell",
            "dir": str(directory.resolve()),
            **{
                k: record.get(k)
                for k in ("method", "arm", "dataset", "label_fraction", "seed", "split_seed")
            },
            "test_metrics": record.get("metrics"),
        },  # fmt: skip
    }
    return _read_state(weights, card["timm_name"]), card


def _from_pretraining(directory: Path, arm: str | None) -> tuple[dict[str, torch.Tensor], dict]:
    nets_path = directory / PRETRAIN_NETS
    if not nets_path.is_file():
        raise ValueError(
            f"{directory}: {PRETRAIN_NETS} is missing (a pretraining from a version before "
            f"it was written); run the pretraining again to export it"
        )
    nets = store.read_json(nets_path)
    arms = sorted(nets["arms"])
    if arm is None and len(arms) > 1:
        raise ValueError(f"{directory} trained {', '.join(arms)}: say which with --arm")
    arm = arm or arms[0]
    if arm not in nets["arms"]:
        raise ValueError(f"--arm {arm}: {directory.name} trained only {', '.join(arms)}")
    spec = nets["arms"][arm]
    state = _read_state(directory / f"{arm}.pt", spec["name"])  # its head: dropped by export()
    card = {
        "timm_name": spec["name"],
        "timm_kwargs": spec["kwargs"],
        "num_classes": 0,  # a backbone: the pretraining's projection head is dropped
        "classes": None,
        "multilabel": None,
        "image_size": nets["image_size"],
        "source": {
            "kind": "pretraining",
            "dir": str(directory.resolve()),
            "method": nets["method"],
            "arm": arm,
            "dataset": nets.get("dataset"),
            "seed": nets.get("seed"),
        },  # fmt: skip
    }
    return state, card


def _read_state(path: Path, model: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ValueError(f"{path}: no such weights file")
    return read_state_dict(path, model)  # the one reader of weights files: one line on error


def check_out(directory: Path, out: Path) -> None:
    """Refuse an OUT that is the card, whose card would take a run-store record's name, or that
    lies in a run store (a card there could replace a record the grid and collector read)."""
    if out.is_dir():
        raise ValueError(
            f"OUT {out} is a folder; give the weights file to write (e.g. {out / 'model.pth'})"
        )
    if out.suffix.lower() == ".json":
        raise ValueError(f"OUT {out} must be the weights file (e.g. model.pth), not the card")
    if out.suffix.lower() == ".safetensors" and out.suffix != ".safetensors":
        raise ValueError(
            f"OUT {out}: timm reads safetensors only from a name ending in lowercase "
            f".safetensors; name it {out.with_suffix('.safetensors').name}"
        )
    card = out.with_suffix(".json")
    if card.name.lower() in RESERVED_CARDS:
        raise ValueError(
            f"OUT {out}: its card would be named {card.name}, the name of a run-store record; "
            f"name OUT otherwise (e.g. model.pth)"
        )
    if (home := _run_store(directory.resolve(), out.resolve())) is not None:
        raise ValueError(
            f"OUT {out} lies inside the run store {home}; export writes outside it "
            f"(e.g. exports/{directory.name}.pth)"
        )


def _run_store(source: Path, out: Path) -> Path | None:
    """The run store (DIR's, or any stage folder's) that holds ``out``; None if none does."""
    if source.parent.name in STAGE_KINDS and out.is_relative_to(source.parent.parent):
        return source.parent.parent
    for folder in out.parents:
        if any((folder / name).is_file() for name in STAGE_RECORDS):
            return folder.parent.parent if folder.parent.name in STAGE_KINDS else folder
    return None


def export(directory: Path, out: Path, arm: str | None = None, overwrite: bool = False) -> dict:
    """Write the weights of ``directory``'s net to ``out`` and its card beside; return the card.

    The weights are checked to load into the timm model strictly before anything is written."""
    out, card_path = Path(out), Path(out).with_suffix(".json")
    check_out(Path(directory), out)
    for path in (out, card_path):
        if path.exists() and not overwrite:
            raise ValueError(f"{path} exists; pass --overwrite to replace it")
    state, card = load_source(directory, arm)
    try:
        net = timm.create_model(
            card["timm_name"],
            pretrained=False,
            num_classes=card["num_classes"],
            **card["timm_kwargs"],
        )
    except RuntimeError as err:  # timm: "Unknown model (...)"
        raise ValueError(
            f"{directory}: its record names timm model {card['timm_name']!r}, which timm "
            f"{timm.__version__} cannot build ({err})"
        ) from None
    if card["num_classes"] == 0:  # a pretraining's backbone: its projection head is dropped
        head = str(net.pretrained_cfg.get("classifier", "head"))
        state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    net.load_state_dict(state, strict=True)  # what timm's checkpoint_path loading will do
    mean, std = normalisation(net)
    card = {
        "schema": CARD_SCHEMA,
        **card,
        "mean": list(mean),
        "std": list(std),
        "input": (
            f"RGB float in [0, 1], resized to {card['image_size']} px square, then "
            f"(x - mean) / std per channel"
        ),
        "output": _output(card),
        "weights_file": out.name,
        "load": (
            f"timm.create_model({card['timm_name']!r}, num_classes={card['num_classes']}, "
            f"checkpoint_path={out.name!r}"
            + "".join(f", {k}={v!r}" for k, v in card["timm_kwargs"].items())
            + ")"
        ),
    }
    if out.suffix == ".safetensors":  # check_out refused other cases: timm would not read them
        from safetensors.torch import save_file

        store.atomic_write(out, lambda tmp: save_file(_contiguous(state), str(tmp)))
    else:
        store.torch_save(out, state)
    card["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    store.write_json(card_path, card)
    return card


def _output(card: dict) -> str:
    """What the net's output means and how to read it: a softmax, sigmoids and the threshold
    its test metrics used (multi-label), or features (a backbone)."""
    k = card["num_classes"]
    if k == 0:
        return "pooled features (no classifier head): add a head, or use them for probes/k-NN"
    if not card["multilabel"]:
        return f"{k} logits, one per class in `classes` order: softmax for probabilities, argmax"
    threshold, used = card.get("threshold"), "its test metrics used"
    if threshold is None:  # a record from before the threshold was kept
        threshold, used = 0.5, "the default; its record does not say"
    return (
        f"{k} logits, one per label in `classes` order, each its own yes/no (multi-label, no "
        f"softmax): a label is present when sigmoid(logit) > {threshold} (the threshold {used})"
    )


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in state.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cass_hpc.export",
        description=(
            "Export a fine-tuned cell or a pretraining as a plain timm state dict (OUT) and a "
            "JSON card (OUT with suffix .json: timm name and kwargs, classes, image size, "
            "normalisation, source). Load it without cass-hpc: timm.create_model(name, "
            "num_classes=K, checkpoint_path=OUT, **timm_kwargs)."
        ),
        epilog=(
            "examples:\n"
            "  python -m cass_hpc.export runs/demo/cells/cass-vit-lf0.1-s0-<key> vit.pth\n"
            "  python -m cass_hpc.export runs/demo/pretrain/cass-cnn-vit-<key> cnn.pth --arm cnn\n"
            "A pretraining exports its backbone (num_classes 0; the projection head is "
            "dropped). Exit status 2 on unusable input."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", metavar="DIR", type=Path, help="a cell or pretraining folder")
    parser.add_argument(
        "out",
        metavar="OUT",
        type=Path,
        help="weights file to write outside the run store (.pth, or .safetensors)",
    )
    parser.add_argument("--arm", choices=("cnn", "vit"), help="which net of a pretraining pair")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT and its card")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cass_hpc.export``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        card = export(args.directory, args.out, args.arm, args.overwrite)
    except (ValueError, store.NoSpaceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    here = card["load"].replace(
        f"checkpoint_path={args.out.name!r}", f"checkpoint_path={str(args.out)!r}"
    )
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}\nload with: {here}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
