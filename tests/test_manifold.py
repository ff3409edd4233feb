"""Distance to the generator's range (gradviz.studies.manifold, Kim et al.): near 0 for an
image the generator can make, large for noise; the study's per-model numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradviz import generative
from gradviz.studies import ChunkStore, manifold
from gradviz.studies.manifold import distance_to_range

STEPS = (60, 15)


@pytest.fixture(scope="module")
def generator():
    return generative.load_generator("mnist-5k")


def test_a_generator_sample_lies_near_the_range_and_noise_far_from_it(generator):
    g = torch.Generator().manual_seed(0)
    c = torch.arange(6)
    with torch.no_grad():  # latents near the projection's start (z = 0, and its z penalty)
        samples = generator(0.3 * torch.randn(6, generator.z_dim, generator=g), c)
    noise = torch.rand(6, 1, 28, 28, generator=g)
    near = distance_to_range(generator, samples, c, steps=STEPS)
    far = distance_to_range(generator, noise, c, steps=STEPS)
    norms = samples.flatten(1).norm(dim=1)
    assert torch.all(near < 0.2 * norms), (near, norms)
    assert torch.all(far > 10) and torch.all(far > 4 * near.max())


def test_the_study_measures_each_models_pgd_examples_against_the_clean_floor(tmp_path, generator):
    store = ChunkStore(tmp_path, read_only=[])
    models = ["mnist-5k/standard", "mnist-5k/pgd-l2"]
    res = manifold.run(models, n=8, eps=3.0, steps=10, projection_steps=STEPS, generator=generator,
                       device="cpu", store=store)
    for name in models:
        d = res.per_image[name]
        assert d["distance_adv"].shape == d["distance_clean"].shape == (8,)
        assert np.all(d["distance_adv"] > 0)
    np.testing.assert_array_equal(res.per_image[models[0]]["distance_clean"], res.distance_clean)
    assert res.per_image["mnist-5k/standard"]["fooled"].all()  # eps 3 fools the standard model
    table = res.table()
    assert list(table["model"]) == models and {"mean_distance_adv", "fooled"} <= set(table.columns)
    again = manifold.run(models, n=8, eps=3.0, steps=10, projection_steps=STEPS, generator=generator,
                         device="cpu", store=store)
    assert again.computed == 0


def test_bad_settings_are_refused(generator):
    with pytest.raises(ValueError, match="eps must be > 0"):
        manifold.run(["mnist-5k/standard"], n=2, eps=0, generator=generator)
