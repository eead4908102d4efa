"""OmegaConf resolvers the configs use (registered once, by the entry point and the launchers).

``${launch_id:}`` names the launching process, so two grids launched in the same second get
sweep folders of their own (``hydra.sweep.dir``); jobs receive the folder already resolved.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def register() -> None:
    if not OmegaConf.has_resolver("launch_id"):
        OmegaConf.register_new_resolver("launch_id", lambda: f"p{os.getpid()}", use_cache=True)


register()
