"""Tests for gradviz.tensors, the one copy of each shared tensor helper: the per-image cosine
(docs/methods.md conventions: 0 with a zero vector, and a zero gradient there), per-image
norms, the eps-ball projection, the ascent direction, the eval-mode context, a module's
device and the label checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradviz.tensors import (
    as_labels, ascent_direction, check_classes, eval_mode, model_device, per_image_cosine, per_image_norm,
    project_ball,
)

# ----------------------------------------------------------------------------- cosine


def test_cosine_conventions():
    a = torch.randn(5, 2, 3, 3)
    b = torch.randn(5, 2, 3, 3)
    assert torch.allclose(per_image_cosine(a, b), F.cosine_similarity(a.flatten(1), b.flatten(1)), atol=1e-6)
    assert torch.allclose(per_image_cosine(a, 3 * a), torch.ones(5), atol=1e-6)
    assert torch.allclose(per_image_cosine(a, -a), -torch.ones(5), atol=1e-6)
    a2 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b2 = torch.tensor([[1.0, 1.0], [3.0, 4.0]])
    torch.testing.assert_close(per_image_cosine(a2, b2), torch.tensor([2 ** -0.5, 0.0]))
    assert per_image_cosine(torch.zeros(0, 3), torch.zeros(0, 3)).shape == (0,)
    with pytest.raises(ValueError, match="shapes"):
        per_image_cosine(a2, b2[:1])


def test_cosine_with_a_zero_vector_is_zero_with_a_zero_gradient():
    a = torch.zeros(2, 1, 3, 3, requires_grad=True)
    b = torch.randn(2, 1, 3, 3, requires_grad=True)
    c = per_image_cosine(a, b)
    assert c.tolist() == [0.0, 0.0]
    c.sum().backward()
    assert torch.equal(a.grad, torch.zeros_like(a)) and torch.equal(b.grad, torch.zeros_like(b))


def test_cosine_backpropagates_twice():
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: per_image_cosine(t, b), (a,))
    assert torch.autograd.gradgradcheck(lambda t: per_image_cosine(t, b), (a,))


def test_the_cosine_of_two_whole_tensors_is_one_row_each():
    a, b = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    expected = float((a * b).sum() / (a.norm() * b.norm()))
    assert per_image_cosine(a.reshape(1, -1), b.reshape(1, -1))[0].item() == pytest.approx(expected)


# ----------------------------------------------------------------------------- norms, projection, step


def test_per_image_norms_and_the_projection_onto_the_ball():
    d = torch.tensor([[[[3.0, -4.0]]], [[[0.1, 0.0]]], [[[0.0, 0.0]]]])  # (3, 1, 1, 2)
    torch.testing.assert_close(per_image_norm(d, "linf"), torch.tensor([4.0, 0.1, 0.0]))
    torch.testing.assert_close(per_image_norm(d, "l2"), torch.tensor([5.0, 0.1, 0.0]))
    torch.testing.assert_close(project_ball(d, 0.5, "linf"), d.clamp(-0.5, 0.5))
    p = project_ball(d, 0.5, "l2")
    torch.testing.assert_close(p[0], d[0] * 0.1)  # rescaled onto the sphere of radius 0.5
    torch.testing.assert_close(p[1:], d[1:])  # inside the ball, or zero: unchanged
    assert torch.equal(project_ball(d, 0.0, "l2")[2], d[2])  # 0 / 0: no NaN


def test_ascent_direction_is_the_sign_or_the_unit_vector_and_no_step_for_a_zero_gradient():
    g = torch.tensor([[3.0, -4.0], [0.0, 0.0]])
    torch.testing.assert_close(ascent_direction(g, "linf"), torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
    torch.testing.assert_close(ascent_direction(g, "l2"), torch.tensor([[0.6, -0.8], [0.0, 0.0]]))


# ----------------------------------------------------------------------------- modules


def test_eval_mode_restores_the_mode_also_after_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    with eval_mode(model) as m:
        assert m is model and not model.training and not model[1].training
    assert model.training and model[1].training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training


def test_model_device_of_parameters_buffers_or_nothing():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.BatchNorm1d(2, affine=False)) == torch.device("cpu")  # buffers only
    assert model_device(nn.Identity()) == torch.device("cpu")
    assert model_device(nn.Identity(), torch.device("meta")) == torch.device("meta")
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")


# ----------------------------------------------------------------------------- labels


def test_as_labels_accepts_integer_sequences_and_broadcasts_one_class():
    torch.testing.assert_close(as_labels([1, 2, 0], 3), torch.tensor([1, 2, 0]))
    t = as_labels(torch.tensor([1, 2], dtype=torch.int32), 2, device="cpu")
    assert t.dtype == torch.int64 and t.device == torch.device("cpu")
    assert as_labels(3, 4, broadcast=True).tolist() == [3, 3, 3, 3]
    assert as_labels([3], 2, broadcast=True).tolist() == [3, 3]
    assert as_labels([], 0).shape == (0,)


@pytest.mark.parametrize("y, n, kwargs, match", [
    (torch.tensor([0.0, 1.0]), 2, {}, "integer class indices; got dtype torch.float32"),
    (torch.tensor([True, False]), 2, {}, "integer class indices"),
    (True, 1, {"broadcast": True}, "integer class indices"),
    ([0, 1, 2], 2, {}, r"shape \(2,\): 2 labels for 2 images; got shape \(3,\)"),
    (3, 2, {}, r"shape \(2,\)"),  # one int only with broadcast
    ([[0], [1]], 2, {}, r"got shape \(2, 1\)"),
    ([0, 1], 3, {"name": "target"}, "target must have shape"),
])
def test_as_labels_refuses_what_is_not_n_class_indices(y, n, kwargs, match):
    with pytest.raises(ValueError, match=match):
        as_labels(y, n, **kwargs)


def test_check_classes():
    check_classes(torch.tensor([0, 3]), 4)
    check_classes(torch.zeros(0, dtype=torch.long), 1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\), got 0\.\.4"):
        check_classes(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\), got -1\.\.1"):
        check_classes(torch.tensor([-1, 1]), 4, "y")
