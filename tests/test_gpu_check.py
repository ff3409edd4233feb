"""bench/gpu_check.py without a GPU: it says so and exits with status 3; its checks run the
same code paths with the CPU as the "device" (CPU against CPU), so they are right apart from
the device."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def test_split():
    from gradviz import data

    return data.load_dataset("mnist-5k", "test")


@pytest.fixture
def models(shipped_models):
    from gradviz import zoo

    return {n: zoo.load_model(n, "cpu") for n in shipped_models}


def test_without_cuda_it_says_so_and_exits_3(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == gpu_check.NO_CUDA_EXIT == 3
    out = capsys.readouterr().out
    assert "no CUDA device" in out and "nothing was run" in out


def test_attribution_and_pgd_checks_pass_cpu_against_cpu(gpu_check, models, test_split):
    x, y = test_split.x[:16], test_split.y[:16]
    att = gpu_check.check_attribution(models, models, x, y, device="cpu")
    assert att.passed, att.detail
    assert "smoothgrad: same seed same maps" in att.detail and "guided_backprop" in att.detail
    p = gpu_check.check_pgd(models, models, x, y, device="cpu")
    assert p.passed, p.detail


def test_residual_training_and_app_grid_checks_pass_cpu_against_cpu(gpu_check, shipped_models, test_split):
    r = gpu_check.check_residual(test_split.x[:4], test_split.y[:4], device="cpu", steps=(5, 2))
    assert r.passed, r.detail
    t = gpu_check.check_training(test_split, device="cpu", limit=128, min_accuracy=0.0)
    assert t.passed, t.detail
    g = gpu_check.check_app_grid(test_split, device="cpu")
    assert g.passed, g.detail


def test_close_is_relative_to_the_reference(gpu_check):
    b = torch.tensor([0.0, 10.0])
    assert gpu_check.close(b + 0.005, b)[0] and not gpu_check.close(b + 0.02, b)[0]
