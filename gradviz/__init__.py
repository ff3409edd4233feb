"""gradviz: see how training shapes a classifier's input gradients.

The library is plain PyTorch + captum + plotly and never imports streamlit (only
``gradviz.ui`` does). Submodules are imported on first use, so ``import gradviz`` stays
cheap::

    from gradviz import data, zoo, attribution
    ds = data.load_dataset("mnist-5k", "test")
    model = zoo.load_model("mnist-5k/pgd-linf")
    maps = attribution.attribute(model, ds.x[:8], ds.y[:8], method="gradient")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "alignment",
    "attacks",
    "attribution",
    "data",
    "generative",
    "gradients",
    "inequality",
    "nets",
    "training",
    "utils",
    "viz",
    "zoo",
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
