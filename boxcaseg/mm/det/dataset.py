"""A COCO dataset whose instances carry ``confidence`` (the Stage 4 drop score) through the
pipeline to ``gt_instances.confidences``. Annotations without one count as fully confident
(1.0), so ordinary COCO files (the full and box-as-mask baselines) load unchanged.

The default Mask R-CNN pipeline (load, resize, flip, pack) never reorders or drops instances,
so ``gt_confidences`` stays aligned with boxes and masks; :class:`PackDetInputsWithConfidence`
checks that and fails loudly if a transform that drops instances (RandomCrop,
FilterAnnotations) was added without carrying the confidences along.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs
from mmdet.registry import DATASETS, TRANSFORMS


@DATASETS.register_module()
class ConfidenceCocoDataset(CocoDataset):
    """mmdet's CocoDataset + ``instance['confidence']`` from each annotation."""

    def parse_data_info(self, raw_data_info: dict[str, Any]) -> dict[str, Any]:
        # mmdet's parser skips some annotations (zero area, unknown class, ...); parsing one
        # annotation at a time keeps each confidence with its own instance without copying it.
        data_info = super().parse_data_info({**raw_data_info, "raw_ann_info": []})
        instances = []
        for ann in raw_data_info["raw_ann_info"]:
            parsed = super().parse_data_info({**raw_data_info, "raw_ann_info": [ann]})["instances"]
            for instance in parsed:
                instance["confidence"] = float(ann.get("confidence", 1.0))
                instances.append(instance)
        data_info["instances"] = instances
        return data_info


@TRANSFORMS.register_module()
class LoadAnnotationsWithConfidence(LoadAnnotations):
    """mmdet's LoadAnnotations, plus ``gt_confidences`` (float32, one per instance)."""

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        results = super().transform(results)
        results["gt_confidences"] = np.array(
            [inst.get("confidence", 1.0) for inst in results.get("instances", [])], dtype=np.float32
        )
        return results


@TRANSFORMS.register_module()
class PackDetInputsWithConfidence(PackDetInputs):
    """mmdet's PackDetInputs, also packing ``gt_confidences`` as ``gt_instances.confidences``."""

    mapping_table = {**PackDetInputs.mapping_table, "gt_confidences": "confidences"}

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        if (
            "gt_confidences" in results
            and "gt_bboxes" in results
            and len(results["gt_confidences"]) != len(results["gt_bboxes"])
        ):
            raise ValueError(
                f"{results.get('img_path')}: {len(results['gt_confidences'])} confidences for "
                f"{len(results['gt_bboxes'])} boxes: a transform dropped instances without "
                "dropping their confidences"
            )
        return super().transform(results)
