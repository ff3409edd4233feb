"""Cached loaders for the app: models and datasets (st.cache_resource, shared and
read-only) and computed arrays (st.cache_data, keyed on plain values, bounded)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import streamlit as st
import torch
from torch import nn

from gradviz import data, zoo
from gradviz.gradients import GradientGrid, compute_gradient_grid
from gradviz.ui.compute import compute_slot, waiting_message
from gradviz.utils import Progress, resolve_device

__all__ = ["cached_dataset", "cached_gradient_grid", "cached_model", "heavy_progress", "load_models", "model_version",
           "progress_bar"]


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A library ``progress(fraction, message)`` callback drawn as an ``st.progress`` bar.

    The bar appears at the first report below 100 % (a study that finds everything stored
    draws none) and is removed when the block ends, also when a rerun interrupts it."""
    bar = None

    def progress(fraction: float, message: str) -> None:
        nonlocal bar
        if bar is None:
            if fraction >= 1.0:
                return
            bar = st.progress(0.0, text=message)
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.empty()


@contextmanager
def heavy_progress() -> Iterator[Progress]:
    """:func:`progress_bar` around one of the app's heavy slots
    (:func:`gradviz.ui.compute.compute_slot`): while the work waits for a slot the bar says
    so, updated every second (so a session that goes away, or a rerun, leaves the line)."""
    with progress_bar() as progress:
        with compute_slot("heavy", on_wait=lambda ahead: progress(0.0, waiting_message("heavy", ahead))):
            yield progress


@st.cache_resource(max_entries=4, show_spinner="Loading the dataset…")
def cached_dataset(name: str, split: str = "test") -> data.ImageDataset:
    """``gradviz.data.load_dataset(name, split)``, shared by all sessions (do not modify)."""
    return data.load_dataset(name, split)


@st.cache_resource(max_entries=16, show_spinner="Loading a model…")
def cached_model(name: str, device: str, version: float = 0.0) -> nn.Module:
    """``gradviz.zoo.load_model(name, device)`` in eval mode, shared by all sessions.

    Read-only: never train, hook or modify it (copy it first). ``version`` (the checkpoint's
    modification time, :func:`model_version`) makes a retrained checkpoint load afresh.
    """
    return zoo.load_model(name, device)


def cached_models(names: Sequence[str], device: str, versions: Sequence[float]) -> dict[str, nn.Module]:
    """{name -> :func:`cached_model`} of the named models at their checkpoint versions, on
    ``device`` resolved (``"auto"``: CUDA when available), in ``names`` order. Raises what
    :func:`cached_model` raises."""
    dev = str(resolve_device(device))
    return {n: cached_model(n, dev, v) for n, v in zip(names, versions)}


def model_version(name: str) -> float:
    """The modification time of a zoo model's checkpoint (0.0 if unknown)."""
    try:
        return os.path.getmtime(zoo.get_card(name).path)
    except (KeyError, OSError, TypeError):
        return 0.0


def load_models(names: Sequence[str], device: str) -> tuple[dict[str, nn.Module], list[str]]:
    """Load the named models from the cache; a model that fails is reported, not raised.

    Returns:
        ``(models, errors)``: name -> model for those that loaded (in ``names`` order), and
        one message per model that did not (unknown name, unsafe or corrupt checkpoint,
        unusable device).
    """
    models: dict[str, nn.Module] = {}
    errors: list[str] = []
    try:
        dev = str(resolve_device(device))
    except ValueError as err:
        return {}, [f"Device {device!r}: {err}"]
    for name in names:
        try:
            models[name] = cached_model(name, dev, model_version(name))
        except (KeyError, ValueError, OSError, RuntimeError) as err:  # CheckpointError is a ValueError
            msg = err.args[0] if isinstance(err, KeyError) and err.args else err
            errors.append(f"Model {name!r} could not be loaded and is left out: {msg}")
    return models, errors


@st.cache_data(max_entries=32, show_spinner=False)
def cached_gradient_grid(
    model_names: tuple[str, ...],
    device: str,
    versions: tuple[float, ...],
    x: np.ndarray,
    labels: tuple[int, ...],
    names: tuple[str, ...],
    settings: dict[str, Any],
) -> GradientGrid:
    """:func:`gradviz.gradients.compute_gradient_grid` on cached models, memoised.

    Keyed on plain values: model names, device, checkpoint versions, the images as an array
    (N, C, H, W), labels, names and the settings (keyword arguments of
    ``compute_gradient_grid``). Raises what it raises (ValueError).
    """
    models = cached_models(model_names, device, versions)
    with compute_slot("interactive"):
        return compute_gradient_grid(
            models, torch.from_numpy(np.ascontiguousarray(x)), list(labels), names=list(names), **settings
        )
