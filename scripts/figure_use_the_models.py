"""The README's picture of "Use the trained models": one photo's boxes turned into masks by
`boxcaseg masks-from-boxes`, and the weak detector's output on a val photo from
`boxcaseg predict`. Draws from those two commands' outputs (it runs no model):

    python scripts/figure_use_the_models.py --masks boxes_with_masks.json \
        --predictions predictions --out docs/images/use_the_models.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from boxcaseg.data.coco import image_path, load_json
from boxcaseg.data.images import load_rgb
from boxcaseg.figures import _colour, _plt
from boxcaseg.masks import segmentation_to_mask


def _paint(ax, rgb: np.ndarray, items: list[tuple[list[float], dict, str]]) -> None:
    plt = _plt()
    shown = rgb.astype(np.float64)
    h, w = rgb.shape[:2]
    for k, (_, segmentation, _) in enumerate(items):
        mask = segmentation_to_mask(segmentation, h, w)
        shown[mask] = 0.45 * shown[mask] + 0.55 * _colour(k)
    ax.imshow(shown.astype(np.uint8))
    for k, (box, _, label) in enumerate(items):
        x, y, bw, bh = box
        ax.add_patch(plt.Rectangle((x, y), bw, bh, fill=False, lw=1.2, ec=_colour(k) / 255))
        if label:
            ax.text(
                x, y, label, fontsize=7, color="white", backgroundcolor=(0, 0, 0, 0.5), va="bottom"
            )
    ax.set_axis_off()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", required=True, help="the output of masks-from-boxes")
    parser.add_argument("--predictions", required=True, help="the output folder of predict")
    parser.add_argument("--out", required=True)
    parser.add_argument("--score", type=float, default=0.5, help="detections drawn from this score")
    args = parser.parse_args()

    masks = load_json(args.masks)
    by_image: dict[int, list] = {}
    for ann in masks["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)

    # a photo with 2-5 whole objects, none tiny or filling the frame: the one whose boxes cover
    # most of it (ties: the first)
    def covered(img: dict) -> float:
        anns = by_image.get(img["id"], [])
        parts = [a["bbox"][2] * a["bbox"][3] / (img["width"] * img["height"]) for a in anns]
        return sum(parts) if 2 <= len(parts) <= 5 and all(0.02 <= p <= 0.3 for p in parts) else -1.0

    image = max(masks["images"], key=covered)
    pred_dir = Path(args.predictions)
    listed = json.loads((pred_dir / "images.json").read_text())
    detections: dict[int, list] = {}
    for det in json.loads((pred_dir / "predictions.segm.json").read_text()):
        if det["score"] >= args.score:
            detections.setdefault(det["image_id"], []).append(det)
    shot = max(listed["images"], key=lambda img: len(detections.get(img["id"], [])))

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    _paint(
        axes[0],
        load_rgb(image_path(masks, image)),
        [(a["bbox"], a["segmentation"], f"{a['confidence']:.2f}") for a in by_image[image["id"]]],
    )
    axes[0].set_title("masks-from-boxes: a box file's boxes as masks (confidence)", fontsize=9)
    names = {c["id"]: c["name"] for c in listed["categories"]}
    _paint(
        axes[1],
        load_rgb(shot["file_name"]),
        [
            (d["bbox"], d["segmentation"], f"{names[d['category_id']]} {d['score']:.2f}")
            for d in detections.get(shot["id"], [])
        ],
    )
    axes[1].set_title(
        f"predict: the weak detector on a val photo (score >= {args.score})", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
