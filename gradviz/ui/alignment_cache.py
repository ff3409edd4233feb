"""Cached computations of the Alignment page (docs/methods.md section 1, Bigolin Lanfredi et al.).

Generators load once per checkpoint file (st.cache_resource, keyed on path and modification
time). The per-image view is :func:`gradviz.studies.alignment.image_alignment`, cached with
st.cache_data, keyed on model names, checkpoint versions, the generator file's version and
the settings; its residuals come from :func:`gradviz.generative.residuals_for`, whose store
on disk is their cache (a pair (image, class) is projected once, ever). The dataset-wide
numbers are the study :mod:`gradviz.studies.alignment`, stored chunk by chunk (the shipped
models' defaults ship under ``assets/studies``): read through st.cache_data when all stored,
else computed under an ``st.progress`` bar; a rerun started by a widget change stops it
between two chunks, keeping what is stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import streamlit as st
import torch

from gradviz import generative
from gradviz.studies import NotStored
from gradviz.studies import alignment as alignment_study
from gradviz.studies.alignment import AlignmentResult, ImageAlignment
from gradviz.ui.cache import cached_dataset, cached_models, heavy_progress
from gradviz.ui.compute import compute_slot
from gradviz.utils import resolve_device

__all__ = [
    "AlignmentResult",
    "ImageAlignment",
    "cached_generator",
    "dataset_alignment",
    "find_generator",
    "image_alignment",
    "stored_alignment",
]


def find_generator(dataset: str) -> Optional[tuple[str, float]]:
    """``(path, modification time)`` of the dataset's generator (shipped first, then the
    user's: :func:`gradviz.generative.list_generators`), or None when it has none."""
    path = generative.list_generators().get(dataset)
    if path is None:
        return None
    try:
        return str(path), os.path.getmtime(path)
    except OSError:
        return None


@st.cache_resource(max_entries=4, show_spinner="Loading the generator…")
def cached_generator(path: str, version: float = 0.0) -> torch.nn.Module:
    """:func:`gradviz.generative.load_generator` of a checkpoint file, on the CPU, shared
    (read-only); ``gradviz_info["fingerprint"]`` holds its weights' fingerprint. ``version``
    (the file's mtime) makes a retrained generator load afresh. Raises what
    ``load_generator`` raises (NoGeneratorError, CheckpointError)."""
    G = generative.load_generator(Path(path), device="cpu")
    G.gradviz_info["fingerprint"] = generative.generator_fingerprint(G)
    return G


def _dev(device: str) -> torch.device:
    return torch.device(str(resolve_device(device)))


@st.cache_data(max_entries=32, show_spinner=False)
def image_alignment(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str, indices: tuple[int, ...],
    target: str, gen_path: str, gen_version: float, steps: tuple[int, int],
) -> ImageAlignment:
    """:func:`gradviz.studies.alignment.image_alignment` of chosen test images, cached.

    Args:
        target: ``"closest:<model name>"`` (each image's closest class under that model,
            Eq. 5) or ``"class:<k>"`` (class k for every image).
        steps: the projection's (free, penalised) Adam steps.

    Raises:
        ValueError: an unknown target, a target equal to an image's label, bad indices (from
            the library).
    """
    kind, _, what = target.partition(":")
    if kind not in ("closest", "class"):
        raise ValueError(f"unknown target {target!r}: 'closest:<model>' or 'class:<k>'")
    dev = _dev(device)
    models = cached_models(model_names, str(dev), versions)
    with compute_slot("heavy"):
        return alignment_study.image_alignment(
            models, indices, what if kind == "closest" else int(what),
            generator=cached_generator(gen_path, gen_version), dataset=dataset, split="test",
            data=cached_dataset(dataset, "test"), steps=steps, device=dev)


@st.cache_data(max_entries=16, show_spinner=False)
def _stored_alignment(model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str,
                      n_images: int, gen_path: str, gen_version: float, steps: tuple[int, int]) -> AlignmentResult:
    """The study's result when every chunk is stored (raises NotStored otherwise; not cached then)."""
    dev = str(_dev(device))
    models = list(cached_models(model_names, dev, versions).values())
    return alignment_study.run(models, dataset=dataset, n=n_images, steps=steps,
                               generator=cached_generator(gen_path, gen_version), device=dev, compute_missing=False)


def stored_alignment(model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str,
                     n_images: int, *, gen_path: str, gen_version: float,
                     steps: tuple[int, int]) -> Optional[AlignmentResult]:
    """:func:`dataset_alignment`'s result if it is stored (the user's store or the shipped
    results), without computing anything; None otherwise."""
    n_images = max(1, min(int(n_images), len(cached_dataset(dataset, "test"))))
    try:
        return _stored_alignment(tuple(model_names), device, tuple(versions), dataset, n_images, gen_path,
                                 gen_version, tuple(int(s) for s in steps))
    except NotStored:
        return None


def dataset_alignment(
    model_names: tuple[str, ...], device: str, versions: tuple[float, ...], dataset: str, n_images: int, *,
    gen_path: str, gen_version: float, steps: tuple[int, int],
) -> AlignmentResult:
    """:func:`gradviz.studies.alignment.run` of the models on the first ``n_images`` test
    images (each model's closest class c~, Eq. 5; the GAN residual toward it, Eqs. 15-16;
    alpha_dx, Eq. 8; alpha_x), computing only the chunks that are not stored, under an
    ``st.progress`` bar (shown only while something is computed).

    Raises:
        ValueError: from the library (e.g. shapes that do not fit the generator).
    """
    found = stored_alignment(model_names, device, versions, dataset, n_images, gen_path=gen_path,
                             gen_version=gen_version, steps=steps)
    if found is not None:
        return found
    dev = str(_dev(device))
    models = list(cached_models(model_names, dev, versions).values())
    with heavy_progress() as progress:
        alignment_study.run(models, dataset=dataset, n=max(1, min(int(n_images), len(cached_dataset(dataset, "test")))),
                            steps=steps, generator=cached_generator(gen_path, gen_version), device=dev,
                            progress=progress)
    return stored_alignment(model_names, device, versions, dataset, n_images, gen_path=gen_path,
                            gen_version=gen_version, steps=steps)
