"""Stage 1 importers on hand-made COCO, VOC, YOLO-seg and DUTS folders, pixel for pixel, and
every validation case with its message."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boxcaseg.data.coco import has_masks, load_json, strip_masks
from boxcaseg.data.importers import import_coco, import_duts, import_voc, import_yolo_seg
from boxcaseg.data.prepare import prepare_dataset
from boxcaseg.data.report import DataError
from boxcaseg.masks import rle_encode, segmentation_to_mask


def write_image(path: Path, width: int, height: int, value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)
    return path


def coco_dataset(tmp_path: Path, **changes) -> tuple[Path, Path]:
    """Two 20x16 images: a polygon instance, an RLE instance and a crowd region."""
    images = tmp_path / "images"
    write_image(images / "a.png", 20, 16)
    write_image(images / "b.png", 20, 16)
    rle_mask = np.zeros((16, 20), bool)
    rle_mask[5:9, 10:15] = True
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 16},
                   {"id": 2, "file_name": "b.png", "width": 20, "height": 16}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 6], "area": 48,
             "iscrowd": 0, "segmentation": [[2, 2, 10, 2, 10, 8, 2, 8]]},
            {"id": 11, "image_id": 2, "category_id": 2, "bbox": [10, 5, 5, 4], "area": 20,
             "iscrowd": 0, "segmentation": rle_encode(rle_mask)},
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16,
             "iscrowd": 1, "segmentation": {"size": [16, 20], "counts": [0, 4, 12, 4, 12, 4, 12, 4, 268]}},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
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
    with pytest.raises(DataError, match="unknown category id dragon"):
        report.raise_if_errors()


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
        images / "a.jpg", quality=95)
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
    assert "[annotation 10 of image 1]: box [25.0, 2.0, 4.0, 4.0] lies fully outside the 20x16 image" in text


def test_box_partly_outside_is_clipped_with_a_warning(tmp_path):
    ann_file, images = coco_dataset(tmp_path, **{"annotations.0.bbox": [-2, 10, 8, 10]})
    coco, report = import_coco(ann_file, images)
    report.raise_if_errors()
    assert coco["annotations"][0]["bbox"] == [0.0, 10.0, 6.0, 6.0]
    (warning,) = report.warnings
    assert warning.action == "clipped" and "partly outside the 20x16 image" in warning.problem
    assert "strict" in errors_of(tmp_path / "s", strict=True, **{"annotations.0.bbox": [-2, 10, 8, 10]})


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
    cfg = {"splits": {"train": {"format": "coco", "annotations": str(ann_file), "images": str(images)}},
           "salient": {"format": "duts", "root": str(root)}}
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
        anns.append({"id": 10 * k + 1, "image_id": k + 1, "category_id": 1, "bbox": [10, 5, 20, 20],
                     "area": 400.0, "iscrowd": 0, "segmentation": rle_encode(big)})
        if k % 2:  # odd images: a second object as large -> no dominant object
            other = np.zeros((30, 40), bool)
            other[0:20, 0:20] = True
            anns.append({"id": 10 * k + 2, "image_id": k + 1, "category_id": 1,
                         "bbox": [0, 0, 20, 20], "area": 400.0, "iscrowd": 0,
                         "segmentation": rle_encode(other)})
    coco = {"info": {"image_root": str(images)}, "images": imgs, "annotations": anns,
            "categories": [{"id": 1, "name": "thing"}]}
    manifest = derive_sets(coco, tmp_path / "out", DeriveSpec(val_fraction=0.5, salient_images=2,
                                                             margin=0.0))
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


def test_save_json_streams_long_lists_as_json_dump_writes_them(tmp_path, monkeypatch):
    import boxcaseg.data.coco as coco_module

    monkeypatch.setattr(coco_module, "_JSON_CHUNK", 3)  # long = more than 3 items here
    objs = [{"info": {"x": [1, 2, 3, 4, 5]}, "images": [{"id": i} for i in range(10)],
             "annotations": [], "categories": [{"id": 1, "name": "caf\u00e9"}] * 4},
            [1, 2, 3, 4, 5], {1: "non-str key"}, {}]
    for obj in objs:
        coco_module.save_json(obj, tmp_path / "out.json")
        assert (tmp_path / "out.json").read_text() == json.dumps(obj)
