"""Unit tests of gradviz.viz.models: which log keys become which lines, and bad logs."""

import math

import pytest

from gradviz.viz.models import (
    agr_diagnostics_figure, gradient_cosines_figure, has_agr_diagnostics, has_gradient_cosines, live_loss_figure,
    training_curves_figure,
)


def _names(fig) -> list[str]:
    return [t.name for t in fig.data]


def test_training_curves_draw_the_keys_a_log_has_in_percent():
    log = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "monitor_clean_accuracy": 0.6},
           {"epoch": 2, "loss": 0.5, "accuracy": 0.75, "monitor_clean_accuracy": float("nan")}]
    fig = training_curves_figure(log, monitor={"n_images": 100})
    assert _names(fig) == ["training loss (the objective)", "train, clean (running mean)",
                           "held-out, clean (100 test images)"]
    loss, train, held_out = fig.data
    assert list(train.y) == [50.0, 75.0]
    assert list(held_out.x) == [1] and list(held_out.y) == [60.0]  # the NaN epoch is left out
    with pytest.raises(ValueError, match="empty"):
        training_curves_figure([])


def test_training_curves_leave_out_a_ce_equal_to_the_loss():
    log = [{"epoch": e, "loss": 1.0 / e, "ce": 1.0 / e} for e in (1, 2)]
    assert _names(training_curves_figure(log)) == ["training loss (the objective)"]
    log[1]["ce"] = 0.4
    assert "cross-entropy part" in _names(training_curves_figure(log))


def test_agr_diagnostics_from_a_log_and_its_start_line():
    log = [{"epoch": e, "agr_cos": 0.1 * e, "agr_gop_rate": 0.2, "agr_norm_adv": 1.0} for e in (1, 2, 3)]
    assert has_agr_diagnostics(log) and not has_agr_diagnostics([{"loss": 1.0}])
    fig = agr_diagnostics_figure(log, start_epoch=2)
    assert _names(fig) == ["mean cosine", "GOP rate (cos <= 0)", "|g_adv|"]
    assert [s.x0 for s in fig.layout.shapes] == [1.5, 1.5]  # the dashed line in both panels


def test_gradient_cosines_one_line_per_objective_key():
    pag = [{"epoch": e, "pag_cos": 0.1 * e, "pag_cos_true": -0.05 * e, "loss": 1.0} for e in (1, 2, 3)]
    assert has_gradient_cosines(pag)
    fig = gradient_cosines_figure(pag, title="")
    assert [t.hovertemplate.split("<extra>")[1] for t in fig.data] == ["pag_cos</extra>", "pag_cos_true</extra>"]
    assert list(fig.data[1].y) == pytest.approx([-0.05, -0.1, -0.15])
    assert tuple(fig.layout.yaxis.range) == (-1.05, 1.05) and fig.layout.title.text is None
    igd = gradient_cosines_figure([{"epoch": 1, "cos": 0.7}, {"epoch": 2, "cos": math.nan}])
    assert len(igd.data) == 1 and list(igd.data[0].x) == [1] and igd.data[0].name.startswith("IGD")
    assert gradient_cosines_figure([{"epoch": 1, "alpha": 0.4}]).data[0].name.startswith("L_alpha")


def test_gradient_cosines_refuse_a_log_without_any():
    assert not has_gradient_cosines([{"epoch": 1, "loss": 1.0}]) and not has_gradient_cosines([])
    with pytest.raises(ValueError, match="no input-gradient cosine"):
        gradient_cosines_figure([{"epoch": 1, "loss": 1.0}])


def test_live_loss_batches_and_epoch_means():
    fig = live_loss_figure([(0.25, 2.0), (0.5, 1.0)], 2, log=[{"epoch": 1, "loss": 1.5}])
    assert _names(fig) == ["batch loss", "epoch mean"]
    assert list(fig.data[0].x) == [0.5, 1.0] and tuple(fig.layout.xaxis.range) == (0, 2)
