"""Deterministic synthetic street-pedestrian dataset in PennFudan format, with
known label errors and a simulated detector — the data behind ``loupe demo``,
the tutorial and many tests. Nothing is derived from the real PennFudan data.

Usage::

    info = sample_data.generate("demo_data", n_images=200, seed=0)
    preds = sample_data.detect("demo_data", seed=1)

or ``python -m sample_data OUT_DIR [--n N] [--seed S]``.

Files written under ``out_dir`` (same seed -> byte-identical files)
------------------------------------------------------------------
``PNGImages/SynthPedNNNNN.png``       RGB image, 320–480 x 240–400 px.
``PedMasks/SynthPedNNNNN_mask.png``   8-bit instance mask: 0 = background, k = object k
                                      of the annotation (its VISIBLE pixels only).
``Annotation/SynthPedNNNNN.txt``      PennFudan/PASCAL-v1 text; object k's box is
                                      ``(x+1, y+1) - (x+w, y+h)`` for its tight 0-based mask
                                      box, except recorded loose boxes. Labels:
                                      ``PASpersonWalking`` (pedestrian), ``PAScyclist``.
``metadata.json``   ``{reference_id: {"camera": "front"|"rear"|"side",
                    "time_of_day": "day"|"dusk"|"night", "weather": "clear"|"rain",
                    "scene": "street"|"plaza", "crowd": <true people in the image>}}``
``truth.json``      ground truth and injected errors (schema below).
``predictions.json`` (from :func:`detect`) ``[{"reference_id", "label": "pedestrian"|
                    "cyclist", "bbox": [x, y, w, h] 0-based float px, "score": (0, 1]}]``.

The reference id is the file stem (``SynthPed00001``). Boxes in JSON are 0-based
``[x, y, w, h]`` pixel boxes with ``w = xmax - xmin + 1`` (pycocotools' convention
for a mask's box).

truth.json schema
-----------------
``version`` (1), ``seed``, ``n_images``,
``label_map``: ``{"PASpersonWalking": "pedestrian", "PAScyclist": "cyclist"}``,
``images``: ``{reference_id: {"width", "height", "horizon",
    "policy_annotate_occluded": bool (did this image's annotator label heavily occluded people),
    "occluders": [{"kind": "car"|"pole"|"bin"|"planter"|"bollard", "box"}],
    "objects": [ one per true person/cyclist with pixels in the frame:
        {"id": 1-based within the image, "label": "pedestrian"|"cyclist" (true class),
         "box": visible tight box (None if fully hidden), "area": visible px,
         "amodal_box", "amodal_area": full-silhouette box (in frame) / px,
         "visible_fraction": visible / in-frame silhouette px (occlusion),
         "in_image_fraction": in-frame / full silhouette px (truncation),
         "height_px", "depth_order" (paint order, 0 = farthest),
         "status": "annotated"|"missing"|"inconsistent_occluded"|"negligible",
         "mask_index": k in the mask/annotation or None,
         "annotated_label": category written (may be wrong) or None,
         "text_box": box written to the annotation text or None,
         "errors": list of reasons below}]}}``,
``errors``: ``[{"reference_id", "reason", "object_id", "label", "box", "mask_index",
    + "annotated_label" (wrong_label) or "text_box" (loose_box)}]`` with reason one of
    * ``missing`` — a clearly visible small/background pedestrian left out of text and mask;
    * ``inconsistent_occluded`` — a heavily occluded (visible < 50%) pedestrian omitted in an
      image whose annotator skipped those (other images label them);
    * ``loose_box`` — text box enlarged 3–8 px per side relative to the mask;
    * ``wrong_label`` — cyclist written as PASpersonWalking or vice versa,
``loose_boxes``: ``[{"reference_id", "mask_index", "object_id", "mask_box", "text_box",
    "text_corners": [x1, y1, x2, y2] 1-based as written}]`` — the cases where the
    annotation text box differs from the mask (importers deriving boxes from masks
    never see these),
``corrections``: actions turning the annotation into the truth:
    ``{"action": "add", "reference_id", "box", "label", "pf_label", "reason", "object_id"}``,
    ``{"action": "relabel", "reference_id", "mask_index", "box", "from_label", "label", ...}``,
    ``{"action": "set_box", "reference_id", "mask_index", "box" (mask box), "from_box", ...}``,
``summary``: counts (images, objects, per label, annotated, negligible, errors per reason,
    crowded_images (>= 5 people), empty_images, small_objects).

The unlabeled pool (street images without annotations, known crowds, planted near-duplicates of
labeled images) is written beside it by :func:`generate_pool`; see :mod:`sample_data.pool`.

"negligible" objects (< 40 visible px or < 12% visible) are real pixels nobody would
label; they are never annotated and are not errors.
"""

from .detector import detect
from .generate import SampleInfo, generate, image_name
from .labels import PF_LABELS
from .pool import generate_pool

__all__ = ["PF_LABELS", "SampleInfo", "detect", "generate", "generate_pool", "image_name"]
