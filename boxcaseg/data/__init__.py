"""Stage 1, data preparation: importers to one internal COCO form, validation, the embedded
demo dataset, and the per-split outputs (box-only training file, evaluation-only ground truth,
salient index)."""
