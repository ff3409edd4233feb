"""Dataset-wide studies: one module per analysis, no Streamlit, stored and resumable.

Each module has a ``run(models, *, dataset, split, n, device, progress, store, **settings)``
function returning a result with ``table()`` (a pandas DataFrame, one row per model) and
``to_npz()``; its ``Settings`` dataclass lists the settings, its ``STUDY`` says how the
images are chunked and stored (:mod:`gradviz.studies.store`: a run killed at any moment
resumes where it stopped, with the same numbers).

============== ============================================================================
robustness     accuracy vs eps under nested PGD, eps50 (docs/methods.md section 1)
inequality     Gini, regional Gini, Lorenz curves, inductive noise and occlusion (section 3)
alignment      closest class, GAN residuals, alpha_dx, alpha_x (section 1)
manifold       distance of l_2 PGD examples to the generator's range (section 4)
roar_kar       ROAR and KAR: retrain on images with the top-ranked pixels removed or kept (4.4)
autoattack     robust accuracy under AutoAttack beside PGD-40, per image (section 1)
============== ============================================================================

The per-image counterpart of the gradient maps (a few chosen images, all attribution
methods, at interactive speed) is :func:`gradviz.gradients.compute_gradient_grid`; it stays
outside this package because it stores nothing and takes images rather than a split. So does
the inequality attacks' (:func:`gradviz.inequality.perturbed_examples`: images in, images
out). The alignment study's, :func:`gradviz.studies.alignment.image_alignment`, lives beside
the study: it takes split indices, because its GAN residuals share the study's residual store
(keyed by split position) and its exact residuals.

A study whose numbers go into the model cards has ``write_card_metrics(result, names=None, *,
measured_by=None)`` (inequality, alignment, roar_kar, autoattack).

From the command line: ``python -m gradviz study NAME --models A B --n N [--out DIR]
[--write-cards]``.
"""

from gradviz.studies import alignment, autoattack, inequality, manifold, roar_kar, robustness
from gradviz.studies.base import NotStored, StudyResult, run_study
from gradviz.studies.store import ChunkStore

#: name -> study module (each with ``STUDY``, ``Settings``, ``run``).
STUDIES = {m.STUDY.name: m for m in (robustness, inequality, alignment, manifold, roar_kar, autoattack)}

__all__ = ["STUDIES", "ChunkStore", "NotStored", "StudyResult", "alignment", "autoattack", "inequality", "manifold", "roar_kar",
           "robustness", "run_study"]
