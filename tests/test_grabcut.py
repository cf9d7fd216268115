"""The GrabCut baseline on hand-made images: it finds a coloured object in its box, stays
inside the box, and falls back to the filled box where it cannot run."""

import cv2
import numpy as np

from boxcaseg.grabcut import GrabCutSpec, grabcut_mask
from boxcaseg.masks import mask_iou


def _scene():
    rng = np.random.default_rng(0)
    image = rng.normal(60, 10, (80, 100, 3)).clip(0, 255).astype(np.uint8)  # dark, noisy
    disc = np.zeros((80, 100), np.uint8)
    cv2.circle(disc, (50, 40), 18, 1, -1)
    image[disc.astype(bool)] = (40, 200, 220)
    return image, disc.astype(bool)


def test_grabcut_finds_the_object_inside_its_box():
    image, disc = _scene()
    mask = grabcut_mask(image, [30.0, 20.0, 41.0, 41.0])
    assert mask_iou(mask, disc) > 0.9
    assert not mask[:20].any() and not mask[61:].any() and not mask[:, :30].any()
    assert mask_iou(mask, grabcut_mask(image, [30.0, 20.0, 41.0, 41.0])) == 1.0  # seeded


def test_grabcut_falls_back_to_the_box_where_it_cannot_run():
    image, _ = _scene()
    tiny = grabcut_mask(image, [5.0, 5.0, 2.0, 3.0])
    assert tiny.sum() == 6 and tiny[5:8, 5:7].all()
    whole = grabcut_mask(image, [0.0, 0.0, 100.0, 80.0], GrabCutSpec(margin=0.5))
    assert whole.all()  # no pixel outside the box: no background model


def test_downscaled_context_gives_nearly_the_same_mask():
    image, disc = _scene()
    small = grabcut_mask(image, [30.0, 20.0, 41.0, 41.0], GrabCutSpec(max_side=40))
    assert mask_iou(small, disc) > 0.8
