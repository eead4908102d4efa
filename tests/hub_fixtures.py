"""A Hugging Face hub cache made here, offline: real safetensors files of real timm
architectures (random weights) laid out exactly as ``hf_hub_download`` leaves them::

    <cache>/models--timm--<tag>/refs/main                       (the snapshot's revision)
    <cache>/models--timm--<tag>/snapshots/<rev>/model.safetensors
    <cache>/models--timm--<tag>/snapshots/<rev>/config.json
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file

DEMO_TAGS = {"cnn": "resnet10t.c3_in1k", "vit": "vit_tiny_patch16_224.augreg_in21k_ft_in1k"}


def write_cached_weights(cache: Path, tag: str, seed: int = 0, **kwargs: Any) -> Path:
    """Write ``tag``'s architecture with random weights (at its pretrained size: a 224-px ViT)
    into ``cache`` as the hub would; return the snapshot's ``model.safetensors``."""
    torch.manual_seed(seed)
    name = tag.partition(".")[0]
    net = timm.create_model(name, pretrained=False, **kwargs)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    repo = cache / f"models--timm--{tag}"
    revision = hashlib.sha1(f"{tag}-{seed}".encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    save_file(state, str(snapshot / "model.safetensors"))
    config = {"architecture": name, "num_classes": 1000, "pretrained_cfg": {"tag": tag}}
    (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot / "model.safetensors"


def write_demo_cache(cache: Path, seed: int = 0) -> dict[str, Path]:
    """Both demo-pair tags (resnet10t, vit_tiny at 224 px, depth 1 to stay small)."""
    return {
        "cnn": write_cached_weights(cache, DEMO_TAGS["cnn"], seed),
        "vit": write_cached_weights(cache, DEMO_TAGS["vit"], seed, depth=1),
    }


class _Hub(http.server.BaseHTTPRequestHandler):
    """The two requests ``hf_hub_download`` makes of a hub: HEAD (commit, etag, size) and GET
    of ``/<repo_id>/resolve/<revision>/<filename>``; files served from ``self.server.files``."""

    def _file(self) -> bytes | None:
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if len(parts) != 5 or parts[2] != "resolve":
            return None
        return self.server.files.get((f"{parts[0]}/{parts[1]}", parts[4]))  # type: ignore[attr-defined]

    def _headers(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        body = self._file()
        if body is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._headers(body)

    def do_GET(self) -> None:  # noqa: N802
        body = self._file()
        if body is None:
            self.do_HEAD()
            return
        self._headers(body)
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@contextlib.contextmanager
def loopback_hub(files: dict[tuple[str, str], bytes]) -> Iterator[str]:
    """A hub on 127.0.0.1 serving ``{(repo_id, filename): bytes}``; yields its endpoint URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    server.files = files  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
