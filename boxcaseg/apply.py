"""Use what a run trained, outside the run: the detector on new photos (``boxcaseg predict``),
the Stage 2 model (or GrabCut) as a box-to-mask tool (``boxcaseg masks-from-boxes``).

Both go through the code the workflow runs, not a copy of it: ``predict`` through mmdet's own
``DetInferencer`` and the results writer of mmdet's ``CocoMetric`` (what the evaluation writes),
``masks-from-boxes`` through the Stage 1 importers, Stage 3's proxy inference and Stage 4's
merge and confidence. Outputs are written whole or not at all.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from boxcaseg.data.coco import Coco, category_names, image_path, load_json, save_json, strip_masks
from boxcaseg.data.images import IMAGE_SUFFIXES, ImageProblem, image_files, image_size
from boxcaseg.data.report import DataError

# --- which images ---------------------------------------------------------------------------


def _listed_paths(source: Path) -> list[Path]:
    """The images a command-line source names: a folder's image files (sorted, not
    recursive), one image file, or a text file with one path per line (relative to it)."""
    if source.is_dir():
        return image_files(source)
    if source.suffix.lower() == ".txt":
        lines = [line.strip() for line in source.read_text().splitlines()]
        return [(source.parent / line) for line in lines if line and not line.startswith("#")]
    return [source]


def image_list(sources: list[str | Path]) -> Coco:
    """The images to predict on, as a COCO ``images`` list (with ``categories`` when a COCO
    file gave them): folders, image files and text lists are numbered 1..N in the order
    given; a COCO file written by ``boxcaseg prepare`` (``*.json``) keeps its image ids, so
    predictions over a run's val split match that split's evaluation file id for id."""
    images: list[dict[str, Any]] = []
    categories: list[dict[str, Any]] | None = None
    seen: set[Path] = set()
    for given in sources:
        source = Path(given)
        if not source.exists():
            raise DataError(f"{source}: no such file or folder")
        if source.suffix.lower() == ".json":
            coco = load_json(source)
            if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
                raise DataError(f"{source}: not a COCO file (no 'images' list)")
            if categories is None and coco.get("categories"):
                categories = coco["categories"]
            entries = [(image_path(coco, img), img["id"]) for img in coco["images"]]
        else:
            entries = [(path, None) for path in _listed_paths(source)]
            if not entries:
                raise DataError(f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        for path, image_id in entries:
            path = path.resolve()
            if path in seen:
                raise DataError(f"{path}: listed twice")
            seen.add(path)
            images.append({"id": image_id, "file_name": str(path)})
    ids = [img["id"] for img in images if img["id"] is not None]
    if len(ids) != len(set(ids)):
        raise DataError("two COCO files give the same image id: predict over one at a time")
    next_id = max(ids, default=0) + 1
    for img in images:
        if img["id"] is None:
            img["id"], next_id = next_id, next_id + 1
    return {"images": images, "categories": categories or []}


def check_images(
    images: list[dict[str, Any]], on_error: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Decode every image once before the model sees any (so a bad file never stops a run
    halfway): ``(readable images with width and height, skipped ones with the reason)``.
    ``on_error='stop'`` raises a :class:`DataError` naming every unreadable file instead."""
    readable, problems = [], []
    for img in images:
        try:
            width, height = image_size(img["file_name"])
        except ImageProblem as err:
            problems.append({"file_name": img["file_name"], "id": img["id"], "problem": str(err)})
            continue
        readable.append({**img, "width": width, "height": height})
    if problems and on_error == "stop":
        listed = "\n".join(f"  {p['file_name']}: {p['problem']}" for p in problems[:20])
        raise DataError(
            f"{len(problems)} image(s) cannot be read (nothing was written; "
            f"--on-error skip predicts on the others):\n{listed}"
        )
    return readable, problems


# --- boxcaseg predict -------------------------------------------------------------------------


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _refuse_existing(out_dir: Path) -> None:
    """An existing non-empty ``out_dir`` is never overwritten."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(
            f"{out_dir}: exists and is not empty; name a new output folder (nothing is overwritten)"
        )


def _fresh_output_dir(out_dir: Path) -> Path:
    """A temporary sibling of ``out_dir`` to write into, renamed to ``out_dir`` when all is
    written (:func:`_publish_dir`)."""
    _refuse_existing(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))


def _publish_dir(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked by _fresh_output_dir)
    tmp.replace(out_dir)


def build_inferencer(
    checkpoint: str | Path, *, config: str | None = None, device: str | None = None
) -> Any:
    """mmdet's ``DetInferencer`` for a trained detector: built from the config stored in the
    checkpoint (what it was trained with), or from ``config`` when given."""
    import torch
    from mmdet.apis import DetInferencer

    import boxcaseg.mm  # noqa: F401  (our registered backbone, heads and transforms)
    from boxcaseg.compat import patch_mmengine_checkpoint_loading
    from boxcaseg.configs import resolve_config
    from boxcaseg.mm.memory_format import apply_memory_format

    patch_mmengine_checkpoint_loading()
    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    inferencer = DetInferencer(
        model=resolve_config(config) if config else None,
        weights=str(checkpoint),
        device=device,
        scope="mmdet",
        show_progress=False,
    )
    apply_memory_format(inferencer.model, inferencer.cfg)  # as it trained and was evaluated
    return inferencer


def predict_images(
    checkpoint: str | Path,
    sources: list[str | Path],
    out_dir: str | Path,
    *,
    config: str | None = None,
    device: str | None = None,
    batch_size: int = 1,
    overlays: bool = False,
    score_threshold: float = 0.3,
    on_error: str = "stop",
    categories_file: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """A trained detector (Mask R-CNN of any variant, or BoxInst) over ``sources``.

    Writes into ``out_dir`` (a new folder, renamed into place when complete):
    ``predictions.bbox.json`` and ``predictions.segm.json`` (COCO results, RLE masks, as the
    evaluation writes them), ``images.json`` (the images with their ids and sizes and the
    categories: pycocotools' ``COCO(images.json).loadRes(predictions.segm.json)`` loads them),
    ``predict.report.json`` (what was skipped and why) and, with ``overlays``, ``overlays/``
    (mmdet's visualiser, detections scoring at least ``score_threshold``).
    ``batch_size`` 1 gives the evaluation's numbers exactly (a batch pads its images alike).
    Category ids: those of ``categories_file`` (or of a COCO file among ``sources``) by class
    name, else 1..K in the detector's class order."""
    import torch
    from mmdet.evaluation import CocoMetric
    from mmdet.structures.mask import encode_mask_results
    from tqdm import tqdm

    out_dir = Path(out_dir)
    _refuse_existing(out_dir)  # checked before anything is read or built
    listed = image_list(sources)
    images, skipped = check_images(listed["images"], on_error)
    if not images:
        raise DataError("no readable image to predict on")
    if overlays:
        names = [Path(img["file_name"]).name for img in images]
        if len(set(names)) != len(names):
            raise DataError(
                "two images share a file name: their overlays would overwrite each "
                "other (predict over one folder at a time for overlays)"
            )
    inferencer = build_inferencer(checkpoint, config=config, device=device)
    classes = list(inferencer.model.dataset_meta.get("classes") or [])
    given = load_json(categories_file)["categories"] if categories_file else listed["categories"]
    known = {c["name"]: c["id"] for c in given}
    categories = [{"id": known.get(name, k + 1), "name": name} for k, name in enumerate(classes)]

    tmp = _fresh_output_dir(out_dir)
    try:
        results = []
        bar = tqdm(
            total=len(images), desc="predict", unit="img", disable=not progress, mininterval=2.0
        )
        for chunk in _chunks(images, max(1, batch_size) * 8):
            with torch.no_grad():
                out = inferencer(
                    [img["file_name"] for img in chunk],
                    batch_size=batch_size,
                    return_datasamples=True,
                    no_save_pred=True,
                    out_dir=str(tmp / "overlays") if overlays else "",
                    no_save_vis=not overlays,
                    pred_score_thr=score_threshold,
                )
            for img, sample in zip(chunk, out["predictions"]):
                pred = sample.pred_instances
                result = {
                    "img_id": img["id"],
                    "bboxes": pred.bboxes.cpu().numpy(),
                    "scores": pred.scores.cpu().numpy(),
                    "labels": pred.labels.cpu().numpy(),
                }
                if "masks" in pred:  # as CocoMetric.process stores them
                    result["masks"] = encode_mask_results(pred.masks.detach().cpu().numpy())
                results.append(result)
            bar.update(len(chunk))
        bar.close()
        metric = CocoMetric(
            ann_file=None,
            metric=["bbox", "segm"],
            format_only=True,
            outfile_prefix=str(tmp / "predictions"),
        )
        metric.cat_ids = [c["id"] for c in categories]
        files = metric.results2json(results, str(tmp / "predictions"))
        if overlays and (tmp / "overlays" / "vis").is_dir():  # DetInferencer's own sub-folder
            (tmp / "overlays" / "vis").replace(tmp / "overlays.tmp")
            shutil.rmtree(tmp / "overlays")
            (tmp / "overlays.tmp").replace(tmp / "overlays")
        save_json(
            {
                "images": images,
                "categories": categories,
                "annotations": [],
                "info": {"checkpoint": str(checkpoint)},
            },
            tmp / "images.json",
        )
        summary = {
            "images": len(images),
            "skipped": skipped,
            "detections": sum(len(r["scores"]) for r in results),
            "files": sorted({Path(f).name for f in files.values()}),
        }
        save_json(summary, tmp / "predict.report.json", indent=1)
        _publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


# --- boxcaseg masks-from-boxes -----------------------------------------------------------------


def masks_from_boxes(
    source: dict[str, Any],
    out_json: str | Path,
    *,
    checkpoint: str | Path | None = None,
    grabcut: bool = False,
    drop_threshold: float = 0.5,
    device: str | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    grabcut_section: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A user's box file (any Stage 1 box format: ``source`` is a ``data.splits`` entry) as a
    COCO instances file with one mask per box, by the Stage 2 model of ``checkpoint`` (Stage 3,
    its trained input size and threshold) or by GrabCut, then merged and scored as in Stage 4:
    every annotation gets its RLE ``segmentation``, a ``confidence`` and ``proxy_kept``
    (confidence above ``drop_threshold``; GrabCut: 0, only empty masks are marked). Masks the
    source may carry are ignored: only its boxes are used."""
    from boxcaseg.baselines import grabcut_raw_masks
    from boxcaseg.data.prepare import import_box_split
    from boxcaseg.merge_drop import run_merge
    from boxcaseg.proxy import proxy_masks_file
    from boxcaseg.proxy_inference import model_input_size

    if (checkpoint is None) == (not grabcut):
        raise DataError("give a Stage 2 checkpoint or choose GrabCut (one of the two)")
    coco, report = import_box_split(
        source, strict=False, decode_images=True, where="masks-from-boxes"
    )
    report.raise_if_errors()
    boxes = strip_masks(coco)
    if not any(not a.get("iscrowd", 0) for a in boxes["annotations"]):
        raise DataError("masks-from-boxes: the box file has no box")
    out_json = Path(out_json)
    if grabcut:
        from boxcaseg.grabcut import GrabCutSpec

        spec = GrabCutSpec(**(grabcut_section or {}))
        summary = run_merge(
            grabcut_raw_masks(boxes, spec),
            str(out_json),
            0.0,
            description="GrabCut masks from the boxes, merged as in Stage 4",
        )
        return {**summary, "method": "grabcut", "warnings": len(report.warnings)}
    from boxcaseg.mm.seg.model import load_segmentor

    model = load_segmentor(str(checkpoint), device)
    with tempfile.TemporaryDirectory(
        prefix=".masks-from-boxes-", dir=out_json.parent if out_json.parent.exists() else None
    ) as work:
        save_json(boxes, Path(work) / "boxes.json")
        proxy_masks_file(
            model,
            Path(work) / "boxes.json",
            Path(work) / "raw.json",
            input_size=model_input_size(model),
            batch_size=batch_size,
            threshold=model.test_cfg["threshold"],
            num_workers=num_workers,
            checkpoint=str(checkpoint),
        )
        summary = run_merge(str(Path(work) / "raw.json"), str(out_json), drop_threshold)
    return {
        **summary,
        "method": "stage2",
        "classes": category_names(boxes),
        "warnings": len(report.warnings),
    }
