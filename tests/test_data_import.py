"""Stage 1 importers on hand-made COCO, VOC, YOLO-seg and DUTS folders, pixel for pixel, and
every validation case with its message."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boxcaseg.data.coco import has_masks, import_coco, load_json, strip_masks
from boxcaseg.data.prepare import annotation_paths, prepare_dataset
from boxcaseg.data.report import DataError
from boxcaseg.data.salient import import_duts
from boxcaseg.data.voc import import_voc
from boxcaseg.data.yolo_seg import import_yolo_seg
from boxcaseg.masks import rle_encode, segmentation_to_mask


def write_image(path: Path, width: int, height: int, value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)
    return path


def two_image_coco() -> dict:
    """Two 20x16 images (a.png, b.png): a polygon instance, an RLE instance and an
    uncompressed-RLE crowd region, as a COCO dict."""
    rle_mask = np.zeros((16, 20), bool)
    rle_mask[5:9, 10:15] = True
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 20, "height": 16},
            {"id": 2, "file_name": "b.png", "width": 20, "height": 16},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "bbox": [2, 2, 8, 6],
                "area": 48,
                "iscrowd": 0,
                "segmentation": [[2, 2, 10, 2, 10, 8, 2, 8]],
            },
            {
                "id": 11,
                "image_id": 2,
                "category_id": 2,
                "bbox": [10, 5, 5, 4],
                "area": 20,
                "iscrowd": 0,
                "segmentation": rle_encode(rle_mask),
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 1,
                "bbox": [0, 0, 4, 4],
                "area": 16,
                "iscrowd": 1,
                "segmentation": {"size": [16, 20], "counts": [0, 4, 12, 4, 12, 4, 12, 4, 268]},
            },
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def coco_dataset(tmp_path: Path, **changes) -> tuple[Path, Path]:
    """Two 20x16 images: a polygon instance, an RLE instance and a crowd region."""
    images = tmp_path / "images"
    write_image(images / "a.png", 20, 16)
    write_image(images / "b.png", 20, 16)
    coco = two_image_coco()
    for key, value in changes.items():
        key_path = key.split(".")
        target = coco
        for part in key_path[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = key_path[-1]
        target[int(last) if last.isdigit() else last] = value
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(coco))
    return ann_file, images


# --- importers, pixel for pixel --------------------------------------------------------------


def test_coco_import_keeps_boxes_masks_and_crowds(tmp_path):
    ann_file, images = coco_dataset(tmp_path)
    coco, report = import_coco(ann_file, images)
    report.raise_if_errors()
    anns = {a["id"]: a for a in coco["annotations"]}
    assert anns[10]["bbox"] == [2, 2, 8, 6]
    poly = segmentation_to_mask(anns[10]["segmentation"], 16, 20)
    expected = np.zeros((16, 20), bool)
    expected[2:8, 2:10] = True
    assert np.array_equal(poly, expected)
    rle = segmentation_to_mask(anns[11]["segmentation"], 16, 20)
    assert rle.sum() == 20 and rle[5:9, 10:15].all()
    assert anns[12]["iscrowd"] == 1
    crowd = segmentation_to_mask(anns[12]["segmentation"], 16, 20)
    assert crowd.sum() == 16 and crowd[:4, :4].all()
    assert report.counts["crowd_or_ignored"] == 1
    assert coco["info"]["image_root"] == str(images.resolve())


def test_box_only_file_has_no_segmentation_at_all(tmp_path):
    ann_file, images = coco_dataset(tmp_path)
    coco, _ = import_coco(ann_file, images)
    boxes = strip_masks(coco)
    assert has_masks(coco) and not has_masks(boxes)
    assert all("segmentation" not in a for a in boxes["annotations"])
    assert "segmentation" in json.dumps(coco) and '"segmentation"' not in json.dumps(boxes)


def voc_folder(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    write_image(root / "JPEGImages" / "img1.jpg", 12, 10)
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "img1.xml").write_text("""<annotation><filename>img1.jpg</filename>
      <size><width>12</width><height>10</height><depth>3</depth></size>
      <object><name>dog</name><difficult>0</difficult>
        <bndbox><xmin>2</xmin><ymin>3</ymin><xmax>6</xmax><ymax>8</ymax></bndbox></object>
      <object><name>person</name><difficult>1</difficult>
        <bndbox><xmin>8</xmin><ymin>1</ymin><xmax>12</xmax><ymax>4</ymax></bndbox></object>
    </annotation>""")
    instance_map = np.zeros((10, 12), np.uint8)
    instance_map[3:7, 2:5] = 1  # object 1 (dog): 4 rows x 3 cols
    instance_map[0:3, 8:11] = 2  # object 2 (person)
    instance_map[7, 1:6] = 255  # void border
    (root / "SegmentationObject").mkdir()
    png = Image.fromarray(instance_map, mode="P")
    png.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    png.save(root / "SegmentationObject" / "img1.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("img1\n")
    return root


def test_voc_import_converts_one_based_boxes_and_instance_pngs(tmp_path):
    root = voc_folder(tmp_path)
    coco, report = import_voc(root, "train")
    report.raise_if_errors()
    cats = {c["name"]: c["id"] for c in coco["categories"]}
    dog, person = coco["annotations"]
    # VOC xmin=2..xmax=6 (1-based, inclusive) -> x=1, w=5
    assert dog["bbox"] == [1, 2, 5, 6] and dog["category_id"] == cats["dog"]
    assert dog["iscrowd"] == 0
    assert person["iscrowd"] == 1  # difficult -> ignore region
    dog_mask = segmentation_to_mask(dog["segmentation"], 10, 12)
    expected = np.zeros((10, 12), bool)
    expected[3:7, 2:5] = True
    assert np.array_equal(dog_mask, expected)  # the void border (255) is not part of it
    assert segmentation_to_mask(person["segmentation"], 10, 12).sum() == 9


def test_voc_unknown_class_is_an_error_naming_it(tmp_path):
    root = voc_folder(tmp_path)
    xml = root / "Annotations" / "img1.xml"
    xml.write_text(xml.read_text().replace("<name>dog</name>", "<name>dragon</name>"))
    _, report = import_voc(root, "train")
    with pytest.raises(DataError) as err:
        report.raise_if_errors()
    # the XML file (not the folder), the object, and the class name (not an id)
    assert "img1.xml [object 0 (dragon)]: unknown class name 'dragon'" in str(err.value)
    assert "category id" not in str(err.value)


def test_yolo_seg_import_rasterises_normalised_polygons(tmp_path):
    write_image(tmp_path / "images" / "x.png", 20, 10)
    write_image(tmp_path / "images" / "empty.png", 20, 10)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("1 0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8\n")
    (tmp_path / "labels" / "orphan.txt").write_text("0 0.1 0.1 0.2 0.1 0.2 0.2\n")
    coco, report = import_yolo_seg(tmp_path / "images", tmp_path / "labels", ["a", "b"])
    report.raise_if_errors()
    (ann,) = coco["annotations"]
    assert ann["category_id"] == 2 and ann["bbox"] == [2, 2, 8, 6]
    expected = np.zeros((10, 20), bool)
    expected[2:8, 2:10] = True
    assert np.array_equal(segmentation_to_mask(ann["segmentation"], 10, 20), expected)
    assert len(coco["images"]) == 2  # the image without labels stays (a negative)
    assert [(w.item, w.action) for w in report.warnings] == [("orphan", "dropped")]
    assert "label file without an image" in report.warnings[0].problem


def test_yolo_seg_bad_lines_name_file_and_line(tmp_path):
    write_image(tmp_path / "images" / "x.png", 20, 10)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("5 0.1 0.2 0.5 0.2 0.5 0.8\n0 0.1 0.2 0.5\n")
    _, report = import_yolo_seg(tmp_path / "images", tmp_path / "labels", ["a", "b"])
    with pytest.raises(DataError) as err:
        report.raise_if_errors()
    text = str(err.value)
    assert "x.txt [line 1]: unknown category 5" in text
    assert "x.txt [line 2]: a polygon needs an even number (>= 6) of coordinates" in text


def duts_folder(tmp_path: Path) -> Path:
    root = tmp_path / "DUTS"
    for stem in ("s1", "s2", "lonely"):
        write_image(root / "DUTS-TR-Image" / f"{stem}.jpg", 8, 6)
    (root / "DUTS-TR-Mask").mkdir(parents=True)
    mask = np.zeros((6, 8), np.uint8)
    mask[1:4, 2:6] = 255
    Image.fromarray(mask).save(root / "DUTS-TR-Mask" / "s1.png")
    soft = mask.copy()
    soft[4, 2:6] = 100  # anti-aliased edge: below half, background after binarising
    soft[0, 2:6] = 200  # above half: foreground
    Image.fromarray(soft).save(root / "DUTS-TR-Mask" / "s2.png")
    return root


def test_duts_import_pairs_by_stem_and_binarises(tmp_path):
    index, report = import_duts(duts_folder(tmp_path))
    report.raise_if_errors()
    entries = {Path(e["image"]).stem: e for e in index["salient"]}
    assert set(entries) == {"s1", "s2"}
    assert entries["s1"]["bbox"] == [2, 1, 4, 3]
    assert entries["s2"]["bbox"] == [2, 0, 4, 4]  # row 0 (200) in, row 4 (100) out
    actions = sorted((w.item, w.action) for w in report.warnings)
    assert actions == [("lonely", "dropped"), ("s2", "binarised")]
    assert any("salient image with no mask" in w.problem for w in report.warnings)


def test_salient_mask_of_another_size_is_an_error(tmp_path):
    root = duts_folder(tmp_path)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "DUTS-TR-Mask" / "lonely.png")
    _, report = import_duts(root)
    with pytest.raises(DataError, match=r"lonely.png \[lonely\]: mask is 5x5 but the image is 8x6"):
        report.raise_if_errors()


def test_strict_turns_salient_warnings_into_errors(tmp_path):
    _, report = import_duts(duts_folder(tmp_path), strict=True)
    with pytest.raises(DataError, match="--strict"):
        report.raise_if_errors()


# --- validation cases, each with its message ----------------------------------------------------


def errors_of(tmp_path, strict=False, **changes) -> str:
    ann_file, images = coco_dataset(tmp_path, **changes)
    _, report = import_coco(ann_file, images, strict=strict)
    with pytest.raises(DataError) as err:
        report.raise_if_errors()
    return str(err.value)


def test_missing_image(tmp_path):
    text = errors_of(tmp_path, **{"images.0.file_name": "nope.png"})
    assert "nope.png [image 1]: missing image file" in text


def test_corrupt_image(tmp_path):
    ann_file, images = coco_dataset(tmp_path)
    (images / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _, report = import_coco(ann_file, images)
    with pytest.raises(DataError, match=r"a.png \[image 1\]: corrupt or unreadable image"):
        report.raise_if_errors()


def test_truncated_image_is_caught_by_full_decode(tmp_path):
    ann_file, images = coco_dataset(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 20, 3), np.uint8)).save(
        images / "a.jpg", quality=95
    )
    data = (images / "a.jpg").read_bytes()
    (images / "a.png").write_bytes(data[: len(data) // 2])
    _, report = import_coco(ann_file, images, decode_images=True)
    with pytest.raises(DataError, match="corrupt or unreadable image"):
        report.raise_if_errors()


def test_image_size_mismatch(tmp_path):
    text = errors_of(tmp_path, **{"images.1.width": 30})
    assert "b.png [image 2]: annotation says 30x16 but the file is 20x16" in text


def test_box_fully_outside_is_an_error(tmp_path):
    text = errors_of(tmp_path, **{"annotations.0.bbox": [25, 2, 4, 4]})
    assert (
        "[annotation 10 of image 1]: box [25.0, 2.0, 4.0, 4.0] lies fully outside the 20x16 image"
        in text
    )


def test_box_partly_outside_is_clipped_with_a_warning(tmp_path):
    ann_file, images = coco_dataset(tmp_path, **{"annotations.0.bbox": [-2, 10, 8, 10]})
    coco, report = import_coco(ann_file, images)
    report.raise_if_errors()
    assert coco["annotations"][0]["bbox"] == [0.0, 10.0, 6.0, 6.0]
    (warning,) = report.warnings
    assert warning.action == "clipped" and "partly outside the 20x16 image" in warning.problem
    assert "strict" in errors_of(
        tmp_path / "s", strict=True, **{"annotations.0.bbox": [-2, 10, 8, 10]}
    )


def test_zero_area_box_is_dropped_with_a_warning(tmp_path):
    ann_file, images = coco_dataset(tmp_path, **{"annotations.0.bbox": [2, 2, 0, 6]})
    coco, report = import_coco(ann_file, images)
    assert [a["id"] for a in coco["annotations"]] == [11, 12]
    (warning,) = report.warnings
    assert warning.action == "dropped" and "zero or negative area box" in warning.problem
    text = errors_of(tmp_path / "s", strict=True, **{"annotations.0.bbox": [2, 2, 5, -1]})
    assert "[annotation 10 of image 1]: zero or negative area box" in text


def test_unknown_category(tmp_path):
    text = errors_of(tmp_path, **{"annotations.1.category_id": 7})
    assert "[annotation 11 of image 2]: unknown category id 7 (known: [1, 2])" in text


def test_duplicate_ids(tmp_path):
    text = errors_of(tmp_path, **{"images.1.id": 1, "annotations.1.id": 10})
    assert "[image 1]: duplicate image id" in text
    assert "[annotation 10 of image 2]: duplicate annotation id" in text


def test_empty_split(tmp_path):
    text = errors_of(tmp_path, images=[], annotations=[])
    assert "empty split: no usable images" in text


def test_corrupt_json_names_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match=r"broken.json: not valid JSON"):
        import_coco(bad, tmp_path)


# --- the stage's outputs ----------------------------------------------------------------------


def test_prepare_writes_box_only_train_file_and_keeps_outputs_on_error(tmp_path):
    ann_file, images = coco_dataset(tmp_path)
    root = duts_folder(tmp_path)
    cfg = {
        "splits": {
            "train": {"format": "coco", "annotations": str(ann_file), "images": str(images)}
        },
        "salient": {"format": "duts", "root": str(root)},
    }
    out = tmp_path / "prepared"
    summary = prepare_dataset(cfg, out)
    assert summary["splits"]["train"]["has_masks"]
    assert "segmentation" not in (out / "train.boxes.json").read_text()
    assert has_masks(load_json(out / "train.gt.json"))
    assert len(load_json(out / "salient.json")["salient"]) == 2
    before = (out / "train.boxes.json").read_bytes()
    # a broken re-import raises and leaves the earlier outputs untouched
    (images / "b.png").unlink()
    with pytest.raises(DataError, match="missing image file"):
        prepare_dataset(cfg, out)
    assert (out / "train.boxes.json").read_bytes() == before


def test_derived_salient_set_is_disjoint_from_the_box_splits(tmp_path):
    from boxcaseg.data.derive import DeriveSpec, derive_sets

    images = tmp_path / "images"
    anns, imgs = [], []
    for k in range(6):
        write_image(images / f"im{k}.png", 40, 30, value=20 * k)
        imgs.append({"id": k + 1, "file_name": f"im{k}.png", "width": 40, "height": 30})
        big = np.zeros((30, 40), bool)
        big[5:25, 10:30] = True  # 400 px
        anns.append(
            {
                "id": 10 * k + 1,
                "image_id": k + 1,
                "category_id": 1,
                "bbox": [10, 5, 20, 20],
                "area": 400.0,
                "iscrowd": 0,
                "segmentation": rle_encode(big),
            }
        )
        if k % 2:  # odd images: a second object as large -> no dominant object
            other = np.zeros((30, 40), bool)
            other[0:20, 0:20] = True
            anns.append(
                {
                    "id": 10 * k + 2,
                    "image_id": k + 1,
                    "category_id": 1,
                    "bbox": [0, 0, 20, 20],
                    "area": 400.0,
                    "iscrowd": 0,
                    "segmentation": rle_encode(other),
                }
            )
    coco = {
        "info": {"image_root": str(images)},
        "images": imgs,
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing"}],
    }
    manifest = derive_sets(
        coco, tmp_path / "out", DeriveSpec(val_fraction=0.5, salient_images=2, margin=0.0)
    )
    train = load_json(manifest["splits"]["train"]["annotations"])
    val = load_json(manifest["splits"]["val"]["annotations"])
    salient_stems = {p.stem for p in (tmp_path / "out/salient/DUTS-TR-Image").iterdir()}
    box_stems = {Path(i["file_name"]).stem for i in train["images"] + val["images"]}
    assert len(salient_stems) == 2 and not salient_stems & box_stems
    assert salient_stems <= {"im0", "im2", "im4"}  # only images with a dominant object
    assert len(box_stems) == 4 and len(train["images"]) == len(val["images"]) == 2
    mask = np.asarray(Image.open(next((tmp_path / "out/salient/DUTS-TR-Mask").iterdir())))
    assert mask.shape == (20, 20) and mask.min() == 255  # the crop is the object's box (margin 0)
    index, report = import_duts(tmp_path / "out/salient")
    report.raise_if_errors()
    assert len(index["salient"]) == 2


# --- instance-id PNG folders ----------------------------------------------------------------------


def write_map(path: Path, values: np.ndarray, palette: bool = False) -> Path:
    """A label map as PNG: gray (8 or 16 bit), or palette-indexed as VOC and labelme2voc
    write them (a full palette, or Pillow would shrink the bit depth)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values)
    if palette:
        image = image.convert("P")
        image.putpalette([v for k in range(256) for v in (k, 255 - k, (7 * k) % 256)])
        image.putdata(values.reshape(-1).tolist())
    image.save(path)
    return path


def instance_png_folder(tmp_path: Path) -> tuple[Path, Path]:
    """Two 12x10 images; a.png: instances 3 (4x3 px) and 7 (2x5 px) plus a void border (255);
    b.png: instance 1 in two disconnected parts."""
    write_image(tmp_path / "images" / "a.png", 12, 10)
    write_image(tmp_path / "images" / "b.jpg", 12, 10)
    a = np.zeros((10, 12), np.uint8)
    a[1:5, 2:5] = 3
    a[6:8, 4:9] = 7
    a[5, :] = 255
    b = np.zeros((10, 12), np.uint8)
    b[0:2, 0:2] = 1
    b[8:10, 10:12] = 1
    write_map(tmp_path / "masks" / "a_mask.png", a)
    write_map(tmp_path / "masks" / "b_mask.png", b)
    return tmp_path / "images", tmp_path / "masks"


def test_instance_png_one_class_boxes_from_masks(tmp_path):
    from boxcaseg.data.instance_masks import import_instance_png

    images, masks = instance_png_folder(tmp_path)
    coco, report = import_instance_png(images, masks, mask_suffix="_mask", classes="cell")
    report.raise_if_errors()
    assert coco["categories"] == [{"id": 1, "name": "cell"}]
    by_image = {i["file_name"]: i["id"] for i in coco["images"]}
    anns = [(a["image_id"], a["bbox"], a["area"]) for a in coco["annotations"]]
    assert anns == [
        (by_image["a.png"], [2, 1, 3, 4], 12.0),
        (by_image["a.png"], [4, 6, 5, 2], 10.0),
        (by_image["b.jpg"], [0, 0, 12, 10], 8.0),
    ]
    first = segmentation_to_mask(coco["annotations"][0]["segmentation"], 10, 12)
    expected = np.zeros((10, 12), bool)
    expected[1:5, 2:5] = True
    assert np.array_equal(first, expected)  # the void row (255) is no instance
    assert not report.warnings


def test_instance_png_masks_beside_the_images(tmp_path):
    from boxcaseg.data.instance_masks import import_instance_png

    images, masks = instance_png_folder(tmp_path)
    for mask in masks.iterdir():
        mask.rename(images / mask.name)
    coco, report = import_instance_png(images, images, mask_suffix="_mask")
    report.raise_if_errors()
    assert sorted(i["file_name"] for i in coco["images"]) == ["a.png", "b.jpg"]
    assert len(coco["annotations"]) == 3 and coco["categories"] == [{"id": 1, "name": "object"}]
    with pytest.raises(DataError, match="mask_suffix"):
        import_instance_png(images, images)


def test_instance_png_side_file_json_and_csv(tmp_path):
    from boxcaseg.data.instance_masks import import_instance_png

    images, masks = instance_png_folder(tmp_path)
    side = tmp_path / "classes.json"
    side.write_text(json.dumps({"a": {"3": "dog", "7": "cat"}, "b": {"1": "dog"}}))
    coco, report = import_instance_png(images, masks, mask_suffix="_mask", classes=str(side))
    report.raise_if_errors()
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]  # sorted when no names
    assert [a["category_id"] for a in coco["annotations"]] == [2, 1, 2]
    csv_file = tmp_path / "classes.csv"
    csv_file.write_text("image,instance,class\na,3,dog\na,7,cat\nb,1,dog\n")
    coco, report = import_instance_png(
        images,
        masks,
        mask_suffix="_mask",
        classes=str(csv_file),
        class_names=["dog", "cat", "bird"],
    )
    report.raise_if_errors()
    assert [a["category_id"] for a in coco["annotations"]] == [1, 2, 1]
    csv_file.write_text("image,instance,class\na,3,dog\nb,1,dragon\n")
    _, report = import_instance_png(
        images, masks, mask_suffix="_mask", classes=str(csv_file), class_names=["dog", "cat"]
    )
    with pytest.raises(DataError) as err:
        report.raise_if_errors()
    text = str(err.value)
    assert "classes.csv [a instance 7]: no class given for this instance" in text
    assert "classes.csv [b instance 1]: unknown class name 'dragon'" in text


def test_instance_png_class_pngs_and_16_bit_ids(tmp_path):
    from boxcaseg.data.instance_masks import import_instance_png

    write_image(tmp_path / "images" / "x.png", 6, 4)
    ids = np.zeros((4, 6), np.uint16)
    ids[0:2, 0:2] = 255  # an ordinary id in a 16-bit map
    ids[2:4, 3:6] = 1000
    write_map(tmp_path / "masks" / "x.png", ids)
    cls = np.zeros((4, 6), np.uint8)
    cls[0:2, 0:2] = 2
    cls[2:4, 3:6] = 1
    write_map(tmp_path / "class" / "x.png", cls)
    coco, report = import_instance_png(
        tmp_path / "images",
        tmp_path / "masks",
        classes=str(tmp_path / "class"),
        class_names=["a", "b"],
    )
    report.raise_if_errors()
    assert [(a["category_id"], a["bbox"]) for a in coco["annotations"]] == [
        (2, [0, 0, 2, 2]),
        (1, [3, 2, 3, 2]),
    ]
    cls[3, 5] = 2  # instance 1000 now spans two classes
    write_map(tmp_path / "class" / "x.png", cls)
    _, report = import_instance_png(
        tmp_path / "images",
        tmp_path / "masks",
        classes=str(tmp_path / "class"),
        class_names=["a", "b"],
    )
    with pytest.raises(
        DataError,
        match=r"x.png \[x instance 1000\]: this instance spans several "
        r"classes \[1, 2\]",
    ):
        report.raise_if_errors()


def test_instance_png_problems_name_the_mask(tmp_path):
    from boxcaseg.data.instance_masks import import_instance_png

    images, masks = instance_png_folder(tmp_path)
    write_map(masks / "b_mask.png", np.zeros((5, 5), np.uint8))
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(masks / "c_mask.jpg")
    write_image(images / "c.png", 12, 10)
    write_image(images / "lonely.png", 12, 10)
    _, report = import_instance_png(images, masks, mask_suffix="_mask")
    with pytest.raises(DataError) as err:
        report.raise_if_errors()
    text = str(err.value)
    assert "b_mask.png [b]: mask is 5x5 but the image is 12x10" in text
    assert "c_mask.jpg [c]: a label map cannot be a lossy .jpg file" in text
    assert [(w.item, w.action) for w in report.warnings] == [("lonely", "dropped")]


def test_instance_png_binary_255_mask_warns_that_255_is_void(tmp_path):
    from boxcaseg.data.instance_masks import import_instance_png

    images, masks = instance_png_folder(tmp_path)
    binary = np.zeros((10, 12), np.uint8)
    binary[2:4, 2:4] = 255
    write_map(masks / "b_mask.png", binary)
    coco, report = import_instance_png(images, masks, mask_suffix="_mask")
    report.raise_if_errors()
    assert len(coco["annotations"]) == 2  # only a.png's instances
    (warning,) = report.warnings
    assert warning.item == "b" and "255 is void" in warning.problem


# --- LabelMe -----------------------------------------------------------------------------------


def labelme_file(
    folder: Path,
    stem: str,
    shapes: list,
    width: int = 20,
    height: int = 16,
    image_path: str | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    path.write_text(
        json.dumps(
            {
                "version": "5.4.1",
                "flags": {},
                "shapes": shapes,
                "imagePath": image_path or f"../images/{stem}.png",
                "imageData": None,
                "imageHeight": height,
                "imageWidth": width,
            }
        )
    )
    return path


def shape(label, points, shape_type="polygon", group_id=None, **extra):
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "shape_type": shape_type,
        "flags": {},
        **extra,
    }


def test_labelme_polygons_groups_and_rectangles(tmp_path):
    from boxcaseg.data.labelme import import_labelme

    write_image(tmp_path / "images" / "a.png", 20, 16)
    write_image(tmp_path / "images" / "b.png", 20, 16)
    labelme_file(
        tmp_path / "ann",
        "a",
        [
            shape("dog", [[2, 2], [10, 2], [10, 8], [2, 8]]),
            # two parts of one occluded cat, joined by group_id
            shape("cat", [[12, 1], [16, 1], [16, 4], [12, 4]], group_id=1),
            shape("cat", [[12, 10], [18, 10], [18, 14], [12, 14]], group_id=1),
            shape("cat", [[1, 12], [3, 12]], shape_type="line"),
        ],
    )
    labelme_file(tmp_path / "ann", "b", [shape("dog", [[9, 7], [3, 2]], shape_type="rectangle")])
    coco, report = import_labelme(tmp_path / "ann", ["dog", "cat"])
    report.raise_if_errors()
    dog, cat, box_only = coco["annotations"]
    assert dog["bbox"] == [2, 2, 8, 6] and dog["category_id"] == 1
    expected = np.zeros((16, 20), bool)
    expected[2:8, 2:10] = True
    assert np.array_equal(segmentation_to_mask(dog["segmentation"], 16, 20), expected)
    assert cat["category_id"] == 2 and cat["bbox"] == [12, 1, 6, 13]
    cat_mask = segmentation_to_mask(cat["segmentation"], 16, 20)
    assert (
        cat_mask.sum() == 4 * 3 + 6 * 4
        and cat_mask[1:4, 12:16].all()
        and cat_mask[10:14, 12:18].all()
    )
    assert box_only["bbox"] == [3, 2, 6, 5] and "segmentation" not in box_only
    assert coco["images"][0]["file_name"] == "../images/a.png"
    assert [(w.item, w.action) for w in report.warnings] == [("shape 3", "dropped")]
    assert report.counts["instances_without_mask"] == 1
    assert not has_masks(coco)  # one box-only instance: no true masks for this split


def test_labelme_rectangle_only_folder_is_box_supervision(tmp_path):
    from boxcaseg.data.labelme import import_labelme

    write_image(tmp_path / "images" / "a.png", 20, 16)
    labelme_file(
        tmp_path / "ann",
        "a",
        [
            shape("car", [[1, 1], [5, 6]], shape_type="rectangle"),
            shape("bus", [[6, 6], [19, 15]], shape_type="rectangle"),
        ],
    )
    coco, report = import_labelme(tmp_path / "ann")
    report.raise_if_errors()
    assert [c["name"] for c in coco["categories"]] == ["bus", "car"]  # sorted labels found
    assert [a["bbox"] for a in coco["annotations"]] == [[1, 1, 4, 5], [6, 6, 13, 9]]
    assert not has_masks(coco)


def test_labelme_ignore_and_background_shapes_are_neither_instances_nor_classes(tmp_path):
    """LabelMe's conventions: `__ignore__` marks a region to ignore (labelme2coco makes no
    annotation of it), `_background_` is the background; neither is an instance or a class,
    also when a labels.txt in labelme's layout names them, and the other shapes import as
    they would without them."""
    from boxcaseg.data.labelme import import_labelme

    write_image(tmp_path / "images" / "a.png", 20, 16)
    kept = [
        shape("dog", [[2, 2], [10, 2], [10, 8], [2, 8]]),
        shape("cat", [[12, 1], [16, 1], [16, 4], [12, 4]], group_id=1),
        shape("cat", [[12, 10], [18, 10], [18, 14]], group_id=1),
        shape("cat", [[1, 9], [6, 14]], shape_type="rectangle"),
    ]
    ignored = [
        shape("__ignore__", [[3, 3], [8, 3], [8, 6]]),
        shape("__ignore__", [[13, 2], [15, 2], [15, 3]], group_id=1),  # inside the cat's group
        shape("_background_", [[0, 0], [19, 0], [19, 15], [0, 15]]),
        shape("__ignore__", [[1, 1], [90, 1], [90, 40]]),  # far outside: not even checked
    ]
    labelme_file(tmp_path / "with", "a", kept[:2] + ignored + kept[2:])
    labelme_file(tmp_path / "without", "a", kept)
    coco, report = import_labelme(tmp_path / "with")
    report.raise_if_errors()
    plain, _ = import_labelme(tmp_path / "without")
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert coco["categories"] == plain["categories"]
    assert coco["annotations"] == plain["annotations"] and len(coco["annotations"]) == 3
    assert report.warnings == [] and report.counts["ignored_shapes"] == 4
    labels_txt = tmp_path / "labels.txt"  # labelme's layout: __ignore__, _background_, classes
    labels_txt.write_text("__ignore__\n_background_\ndog\ncat\n")
    coco, report = import_labelme(tmp_path / "with", str(labels_txt))
    report.raise_if_errors()
    assert [c["name"] for c in coco["categories"]] == ["dog", "cat"]
    assert sorted(a["category_id"] for a in coco["annotations"]) == [1, 2, 2]


def test_labelme_problems_name_the_json_and_the_shape(tmp_path):
    from boxcaseg.data.labelme import import_labelme

    write_image(tmp_path / "images" / "a.png", 20, 16)
    write_image(tmp_path / "images" / "b.png", 20, 16)
    labelme_file(
        tmp_path / "ann",
        "a",
        [
            shape("dog", [[2, 2], [10, 2]]),
            shape("dog", [[2, 2], [10, float("nan")], [4, 4]]),
            shape("dog", [[1, 1], [2, 2], [3, 1]], group_id=4),
            shape("cat", [[5, 5], [6, 6], [7, 5]], group_id=4),
        ],
    )
    labelme_file(tmp_path / "ann", "b", [shape("dog", [[1, 1], [4, 4]], "rectangle")], width=30)
    _, report = import_labelme(tmp_path / "ann", ["dog", "cat"])
    with pytest.raises(DataError) as err:
        report.raise_if_errors()
    text = str(err.value)
    assert "a.json [shape 0]: a polygon needs at least 3 points, got 2" in text
    assert "a.json [shape 1]: point 1 must hold two finite numbers, got [10, nan]" in text
    assert "a.json [group_id 4]: joins shapes of different labels ['cat', 'dog']" in text
    assert (
        "b.json [imagePath of b.json]: annotation says 30x16 but ../images/b.png is 20x16" in text
    )


# --- VOC without XML (labelme2voc) ------------------------------------------------------------


def test_voc_without_xml_reads_instances_and_classes_from_pngs(tmp_path):
    root = tmp_path / "voc"
    write_image(root / "JPEGImages" / "p1.jpg", 12, 10)
    write_image(root / "JPEGImages" / "p2.jpg", 12, 10)
    (root / "class_names.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "class_names.txt").write_text("_background_\nperson\nbottle\n")
    objects = np.zeros((10, 12), np.uint8)
    objects[1:4, 1:5] = 1
    objects[5:9, 6:8] = 2
    objects[9, :] = 255
    classes = np.zeros((10, 12), np.uint8)
    classes[1:4, 1:5] = 2  # bottle
    classes[5:9, 6:8] = 1  # person
    classes[9, :] = 255
    for stem in ("p1", "p2"):
        write_map(root / "SegmentationObject" / f"{stem}.png", objects, palette=True)
        write_map(root / "SegmentationClass" / f"{stem}.png", classes, palette=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("p2\n")
    coco, report = import_voc(root, "val")
    report.raise_if_errors()
    assert [c["name"] for c in coco["categories"]] == ["person", "bottle"]
    assert [i["file_name"] for i in coco["images"]] == ["p2.jpg"]
    assert [(a["category_id"], a["bbox"]) for a in coco["annotations"]] == [
        (2, [1, 1, 4, 3]),
        (1, [6, 5, 2, 4]),
    ]
    assert has_masks(coco)
    coco, _ = import_voc(root)  # no split: every instance PNG
    assert len(coco["images"]) == 2
    classes[1, 1] = 1  # instance 1 now spans two classes
    write_map(root / "SegmentationClass" / "p1.png", classes, palette=True)
    _, report = import_voc(root)
    with pytest.raises(
        DataError,
        match=r"SegmentationClass/p1.png \[p1 instance 1\]: this "
        r"instance spans several classes",
    ):
        report.raise_if_errors()


def test_voc_errors_name_the_xml_file(tmp_path):
    root = voc_folder(tmp_path)
    xml = root / "Annotations" / "img1.xml"
    xml.write_text(
        xml.read_text()
        .replace("<xmin>2</xmin>", "<xmin>two</xmin>")
        .replace("<width>12</width>", "<width>nan</width>")
    )
    _, report = import_voc(root, "train")
    with pytest.raises(DataError) as err:
        report.raise_if_errors()
    text = str(err.value)
    assert "img1.xml [size]: <width> is not a finite number: nan" in text
    assert "img1.xml [object 0 (dog)]: bndbox: <xmin> is not a number: 'two'" in text


def test_prepare_refuses_a_val_split_without_masks_before_writing(tmp_path):
    write_image(tmp_path / "images" / "a.png", 20, 16)
    labelme_file(tmp_path / "ann", "a", [shape("car", [[1, 1], [5, 6]], shape_type="rectangle")])
    salient = duts_folder(tmp_path)
    split = {"format": "labelme", "root": str(tmp_path / "ann")}
    cfg = {
        "splits": {"train": split, "val": split},
        "salient": {"format": "duts", "root": str(salient)},
    }
    out = tmp_path / "prepared"
    with pytest.raises(DataError, match="the val split has no masks"):
        prepare_dataset(cfg, out, require_masks=("val",))
    assert not out.exists()
    summary = prepare_dataset({**cfg, "splits": {"train": split}}, out, require_masks=("val",))
    assert not summary["splits"]["train"]["has_masks"]  # box supervision: fine for train


def test_save_json_streams_long_lists_as_json_dump_writes_them(tmp_path, monkeypatch):
    import boxcaseg.data.coco as coco_module

    monkeypatch.setattr(coco_module, "_JSON_CHUNK", 3)  # long = more than 3 items here
    objs = [
        {
            "info": {"x": [1, 2, 3, 4, 5]},
            "images": [{"id": i} for i in range(10)],
            "annotations": [],
            "categories": [{"id": 1, "name": "caf\u00e9"}] * 4,
        },
        [1, 2, 3, 4, 5],
        {1: "non-str key"},
        {},
    ]
    for obj in objs:
        coco_module.save_json(obj, tmp_path / "out.json")
        assert (tmp_path / "out.json").read_text() == json.dumps(obj)


def test_salient_folder_without_masks_names_the_masks_folder(tmp_path):
    from boxcaseg.data.salient import import_salient

    root = duts_folder(tmp_path)
    empty = tmp_path / "no_masks_here"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        import_salient(root / "DUTS-TR-Image", empty)
    text = str(err.value)
    assert f"{empty}: the masks folder holds no image file" in text
    assert f"{root / 'DUTS-TR-Image'}:" not in text  # the images are fine: not named


def test_instance_png_classes_as_a_list_of_names(tmp_path):
    from boxcaseg.data.instance_masks import import_instance_png

    images, masks = instance_png_folder(tmp_path)
    # one name: every instance has it, as `classes: cell`
    one, report = import_instance_png(images, masks, mask_suffix="_mask", classes=["cell"])
    report.raise_if_errors()
    alike, _ = import_instance_png(images, masks, mask_suffix="_mask", classes="cell")
    assert one == alike
    # several: instance id v is the v-th name (a.png holds ids 3 and 7, b.jpg id 1)
    names = ["person", "car", "dog", "cat", "cow", "bus", "boat"]
    coco, report = import_instance_png(images, masks, mask_suffix="_mask", classes=names)
    report.raise_if_errors()
    assert [c["name"] for c in coco["categories"]] == names
    name_of = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(name_of[a["category_id"]] for a in coco["annotations"]) == [
        "boat",
        "dog",
        "person",
    ]
    # an id past the list is an error naming the mask and the instance
    _, report = import_instance_png(images, masks, mask_suffix="_mask", classes=names[:5])
    with pytest.raises(
        DataError, match=r"a_mask\.png \[a instance 7\]: instance id 7 has no class"
    ):
        report.raise_if_errors()


def test_annotation_paths_are_a_sources_existing_annotation_files(tmp_path):
    """What the workflow's import rules take as inputs (an edit of them reruns the import):
    the annotation files and folders, a names file, never the image folder or a builtin list."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    source = {"format": "yolo_seg", "images": str(images), "labels": str(labels), "names": "coco80"}
    assert annotation_paths(source) == [str(labels)]
    names = tmp_path / "names.txt"
    names.write_text("person\n")
    assert annotation_paths({**source, "names": str(names)}) == [str(labels), str(names)]
    missing = {"format": "coco", "annotations": str(tmp_path / "no.json"), "images": str(images)}
    assert annotation_paths(missing) == []  # the import names the missing file itself
