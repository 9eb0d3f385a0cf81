r"""Synthetic FERPlus / AffectNet / RAF-DB / SFEW look-alikes: procedural faces with local expressions.

Neither FERPlus nor AffectNet can be downloaded on a machine without internet (both are licence-gated), so the
examples and their tests run on data drawn here and written in **exactly** the providers' file formats. The
faces are cartoons, but they are built so that Region Attention Networks have something real to find:

* every expression has its own signature in *several* local parts (brows, eyes, the nose/glabella area, mouth),
  so a crop that sees only the upper or only the lower face still carries the class, while a model that relies
  on the whole face loses evidence when a part is hidden;
* identity varies (head shape, feature spacing, skin tone, hair, background, lighting, blur, noise, contrast),
  expressions vary in intensity and some images blend two expressions (with annotator votes to match);
* occlusions of the four types of the RAN paper's Table I (upper, bottom, left/right, glasses/mask) and yaw-like
  head poses are drawn with chosen probabilities per split and recorded, and the test split gets occlusion and
  pose lists in the published formats of ``kaiwang960112/Challenge-condition-FER-dataset``.

Quality check (a 3-layer CNN, 8 epochs on 2,300 training faces on 2 CPU cores; the region model is the same
CNN on the paper's 5 fixed crops + the whole face, native crop sizes, self-attention pooling; 855 test faces,
298 occluded, so about +-3 points of noise on the occluded accuracies). Accuracy clean / occluded / pose > 30:

==========================  ======================  ======================
training faces occluded     whole face              regions
==========================  ======================  ======================
5 %                         76.1 / 37.9 / 51.1      77.0 / 46.3 / 56.1
8 % (the default)           84.6 / 46.6 / 59.9      83.3 / 53.4 / 61.8
15 %                        81.1 / 49.7 / 62.1      82.9 / 53.7 / 62.4
==========================  ======================  ======================

Rendering is vectorised in torch: every part is an analytic shape whose anti-aliased coverage is computed for a
whole batch at once and composited back to front (a few thousand 48x48 faces take a few seconds on two CPU
cores). The same seed gives byte-identical files on the same machine and torch version.

Modules (one concern each; every name below is also importable from this package):

* :mod:`~examples.common.synthetic.faces`: the expression model and :func:`sample_faces` (identity, pose,
  camera, occluder parameters per face);
* :mod:`~examples.common.synthetic.render`: the one face drawer, :func:`render` (images, 68 landmarks and the
  occluder's opacity per pixel), :func:`render_batch`, :func:`render_faces`;
* :mod:`~examples.common.synthetic.annotate`: kinds of rows, class / occlusion / pose quotas, annotator votes
  (the majority rule is :func:`examples.ferplus.formats.majority_label`);
* :mod:`~examples.common.synthetic.occluders`: the occlusion ground truth ``occluders.npz``,
  :func:`load_occluders`, :func:`load_occluder_masks`, :func:`box_coverage`;
* one writer per dataset: :func:`generate_ferplus` (``ferplus``), :func:`generate_affectnet` (``affectnet``),
  :func:`generate_rafdb` (``rafdb``), :func:`generate_sfew` (``sfew``), and
  :mod:`~examples.common.synthetic.pictures` (:func:`render_with_synthetic`, :func:`place_on_canvas`) for the
  image-folder datasets. Every writer takes its split sizes as one :class:`Splits` (``train``, ``valid``,
  ``test``, in the readers' split names; :mod:`~examples.common.synthetic.splits`) and its on-disk
  arrangement as a string, the reader's name of it (``layout``; ``variant`` for SFEW, as its reader says);
  the FERPlus and AffectNet writers plan every row, render the faces, then write the files
  (:func:`~examples.common.synthetic.ferplus.plan_ferplus`, :func:`~examples.common.synthetic.ferplus.render_ferplus`);
* :mod:`~examples.common.synthetic.sheet` (:func:`contact_sheet`) and :mod:`~examples.common.synthetic.cli`.

Class names, file layouts and label rules come from the datasets' format modules
(``examples/<dataset>/formats.py``), which the readers use too; the generator imports no reader.

Occlusion ground truth:
    The FERPlus and AffectNet writers store ``occluders.npz`` beside the data: per split ``<split>_keys`` (the
    image keys of the readers and subset lists: ``fer%07d`` for FERPlus, the file stem for AffectNet) and
    ``<split>_alpha`` (``uint8 (N, H, W)`` at the written image's size, ``255 * `` the opacity with which the
    face's occluder covers each pixel; all zero for a face without one). Read it with ``numpy.load`` or
    :func:`load_occluders` / :func:`load_occluder_masks`; :func:`box_coverage` gives the share of region boxes
    that the occluder covers (see :mod:`~examples.common.synthetic.occluders` for the conventions and how to
    map the network's boxes onto the mask).

Convention:
    Drawing coordinates are normalised image coordinates, ``x`` to the right and ``y`` down, both in
    ``[-1, 1]`` across the image; pixel ``i`` covers ``[i, i + 1)`` in continuous pixel coordinates, so the
    normalised coordinate of its centre is ``(i + 0.5) / size * 2 - 1``. Landmarks are written in continuous
    pixel coordinates (``x``, ``y``), the iBUG 68-point order. "Left"/"right" are as seen in the image.

Command line (both forms work)::

    python -m examples.common.synthetic ferplus --out DIR [--train N --valid N --test N --seed S --layout csv]
    python examples/common/synthetic affectnet --out DIR [--train N --test N --layout csv|npy]
    python -m examples.common.synthetic rafdb --out DIR [--layout provider|kaggle --train N --test N]
    python -m examples.common.synthetic sfew --out DIR [--variant both|frames|aligned --train N --test N]
    python -m examples.common.synthetic sheet --out /tmp/synthetic_sheet.png
"""

from __future__ import annotations

from examples.ferplus.formats import FERPLUS_CLASSES

from .affectnet import (
    AFFECTNET_CLASSES,
    AFFECTNET_HEADER,
    AFFECTNET_LAYOUTS,
    AFFECTNET_SPLITS,
    FERPLUS_TO_AFFECTNET,
    generate_affectnet,
)
from .annotate import OCCLUSION_LIST_TYPE, majority_label
from .cli import main
from .faces import OCCLUSIONS, sample_faces
from .ferplus import (
    FER2013_EMOTION,
    FER2013_HEADER,
    FERPLUS_FOLDERS,
    FERPLUS_HEADER,
    FERPLUS_LAYOUTS,
    FERPLUS_SPLITS,
    FERPLUS_VOTE_COLUMNS,
    generate_ferplus,
)
from .occluders import (
    OCCLUDERS_FILE,
    Occluders,
    box_coverage,
    load_occluder_masks,
    load_occluders,
    write_occluders,
)
from .pictures import place_on_canvas, render_with_synthetic
from .rafdb import RAFDB_LAYOUTS, RAFDB_SPLITS, generate_rafdb
from .render import Rendered, render, render_batch, render_faces
from .sfew import SFEW_SPLITS, SFEW_VARIANTS, generate_sfew
from .sheet import contact_sheet
from .splits import Splits

__all__ = [
    "AFFECTNET_CLASSES",
    "AFFECTNET_HEADER",
    "AFFECTNET_LAYOUTS",
    "AFFECTNET_SPLITS",
    "FER2013_EMOTION",
    "FER2013_HEADER",
    "FERPLUS_CLASSES",
    "FERPLUS_FOLDERS",
    "FERPLUS_HEADER",
    "FERPLUS_LAYOUTS",
    "FERPLUS_SPLITS",
    "FERPLUS_TO_AFFECTNET",
    "FERPLUS_VOTE_COLUMNS",
    "OCCLUDERS_FILE",
    "OCCLUSIONS",
    "OCCLUSION_LIST_TYPE",
    "RAFDB_LAYOUTS",
    "RAFDB_SPLITS",
    "SFEW_SPLITS",
    "SFEW_VARIANTS",
    "Occluders",
    "Rendered",
    "Splits",
    "box_coverage",
    "contact_sheet",
    "generate_affectnet",
    "generate_ferplus",
    "generate_rafdb",
    "generate_sfew",
    "load_occluder_masks",
    "load_occluders",
    "main",
    "majority_label",
    "place_on_canvas",
    "render",
    "render_batch",
    "render_faces",
    "render_with_synthetic",
    "sample_faces",
    "write_occluders",
]
