"""gradviz's figures: arrays in, plotly ``go.Figure`` out; no streamlit here.

Where each thing lives:

* :mod:`gradviz.viz.style`: the one look: ``FONT``, ``LAYOUT`` (layout defaults),
  ``PALETTE`` and ``model_colours`` / ``resolve_colours`` (a model's colour by its position
  among the compared models), ``DIVERGING_COLORSCALE`` (every signed map, centred on 0),
  ``MAGNITUDE_COLORSCALE`` (|attribution| maps), ``WRONG`` (a wrong prediction's colour).
* :mod:`gradviz.viz.common`: helpers of the figure modules: ``as_array``, ``chw``,
  ``class_name``, ``short_model_name``, ``prediction_text``, image panels.
* One module per page: :mod:`gradviz.viz.gradients` (the gradient grid),
  :mod:`gradviz.viz.attack`, :mod:`gradviz.viz.inequality`, :mod:`gradviz.viz.alignment`,
  :mod:`gradviz.viz.models`.
* :mod:`gradviz.viz.export`: static export (PNG/SVG/PDF through kaleido, HTML) and the
  numbers behind every figure (every ``*_to_npz`` / ``*_to_csv``).

Import the module you need (``from gradviz.viz.attack import attack_panels_figure``); this
package imports none of them itself, so ``import gradviz.viz`` stays cheap.
"""
