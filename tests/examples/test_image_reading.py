"""Images read as they are (issue 13): 16-bit and other PIL modes scaled by the one shared reader in every dataset
reader, face boxes outside their image, non-UTF-8 files, decompression bombs and non-ASCII digits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from examples.affectnet.data import BadImageError, check_images, load_affectnet, load_face
from examples.common.folder_data import ImageListDataset, ImageRecord, convert_image, read_image
from examples.common.synthetic import Splits, generate_affectnet, generate_ferplus, generate_rafdb
from examples.ferplus.data import load_ferplus
from examples.rafdb.data import load_rafdb
from PIL import Image

#: A 16-bit ramp over the whole range, and what it is in 8 bits: round(v * 255 / 65535).
RAMP16 = np.linspace(0, 65535, 48 * 48).round().astype(np.uint16).reshape(48, 48)
RAMP8 = np.rint(RAMP16.astype(np.float64) * 255 / 65535).astype(np.uint8)


def save_16bit_png(path: Path) -> None:
    image = Image.fromarray(RAMP16)
    assert image.mode == "I;16"
    image.save(path, format="PNG")


# ---------------------------------------------------------------------------------------------------------------
# The shared reader


def test_16_bit_modes_are_scaled_not_clipped(tmp_path):
    path = tmp_path / "ramp.png"
    save_16bit_png(path)
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")
    grey = read_image(path, "L")
    np.testing.assert_array_equal(np.asarray(grey), RAMP8)
    rgb = np.asarray(read_image(path, "RGB"))
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], RAMP8)
    big_endian = Image.frombytes("I;16B", (48, 48), RAMP16.astype(">u2").tobytes())
    np.testing.assert_array_equal(np.asarray(convert_image(big_endian, "L")), RAMP8)
    as_int32 = Image.fromarray(RAMP16.astype(np.int32))
    assert as_int32.mode == "I"
    np.testing.assert_array_equal(np.asarray(convert_image(as_int32, "L")), RAMP8)


def test_float_and_other_modes(tmp_path):
    unit = RAMP16.astype(np.float32) / 65535
    np.testing.assert_array_equal(
        np.asarray(convert_image(Image.fromarray(unit, "F"), "L")),
        np.rint(unit.astype(np.float64) * 255).astype(np.uint8),
    )
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    for mode in ("P", "RGBA", "LA", "CMYK", "1", "L", "YCbCr"):
        image = rgb.convert(mode)
        for target in ("RGB", "L"):
            np.testing.assert_array_equal(
                np.asarray(convert_image(image, target)),
                np.asarray(image.convert(target)),
                err_msg=f"{mode} -> {target}",
            )
    with pytest.raises(ValueError, match="expected mode 'RGB' or 'L', got 'RGBA'"):
        convert_image(rgb, "RGBA")


def test_a_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(OSError, match=r"cannot read image .*huge\.png.*decompression bomb"):
        read_image(path)
    dataset = ImageListDataset([ImageRecord("huge", path, 0)], 16)
    with pytest.raises(OSError, match=r"huge\.png"):
        dataset[0]


# ---------------------------------------------------------------------------------------------------------------
# Every dataset reader uses it


def test_image_list_datasets_read_16_bit_images(tmp_path):  # RAF-DB and SFEW
    path = tmp_path / "face.png"
    save_16bit_png(path)
    image = ImageListDataset([ImageRecord("face", path, 0)], 48)[0][0]
    np.testing.assert_array_equal(image[0].numpy(), RAMP8)


def test_ferplus_folder_layout_reads_16_bit_images(tmp_path):
    data = tmp_path / "ferplus"
    generate_ferplus(data, Splits(train=8, valid=4, test=4), seed=0, layout="folder")
    split = load_ferplus(data, "majority", layout="folder")["test"]
    save_16bit_png(split.records[0].image_path)
    image = split.dataset(None, draw_targets=False)[0][0]
    np.testing.assert_array_equal(image[0].numpy(), RAMP8)


def test_affectnet_reads_16_bit_images(tmp_path):
    path = tmp_path / "face.png"
    save_16bit_png(path)
    face, _ = load_face(path, None, 0.0, 48)
    np.testing.assert_array_equal(np.asarray(face)[..., 0], RAMP8)


# ---------------------------------------------------------------------------------------------------------------
# Face boxes outside the image


def test_rafdb_box_outside_the_image_names_the_files(tmp_path):
    generate_rafdb(tmp_path / "rafdb", Splits(train=7, test=7), lists=False)
    data = load_rafdb(tmp_path / "rafdb", images="original")
    record = data.train[0]
    assert record.box is not None and record.box_source.endswith("_boundingbox.txt")
    outside = dataclasses.replace(record, box=(-3000.0, -3000.0, -2000.0, -2000.0))
    dataset = ImageListDataset([outside], 32, crop_to_box=True)
    with pytest.raises(
        ValueError,
        match=rf"{record.path.name}: face box .* lies entirely outside the .* image "
        rf"\(box from .*_boundingbox\.txt; label from .*:\d+\)",
    ):
        dataset[0]
    partly = dataclasses.replace(record, box=(-10.0, -10.0, 20.0, 20.0))  # partly outside: padded, fine
    assert ImageListDataset([partly], 32, crop_to_box=True)[0][0].shape == (3, 32, 32)


def test_affectnet_box_outside_the_image_is_an_error_or_counted_and_skipped(tmp_path):
    root = tmp_path / "affectnet"
    generate_affectnet(root, Splits(train=8, test=4), layout="csv", image_size=64, seed=1)
    csv_path = root / "Manually_Annotated_file_lists" / "training.csv"
    lines = csv_path.read_text().splitlines()
    fields = lines[1].split(",")
    fields[1], fields[2] = "5000", "5000"  # face_x, face_y far beyond the 64 x 64 image
    lines[1] = ",".join(fields)
    csv_path.write_text("\n".join(lines) + "\n")
    split = load_affectnet(root)["train"]
    index = int((split.lines == 2).nonzero()[0])
    with pytest.raises(
        BadImageError,
        match=r"face box .* lies entirely outside the 64 x 64 image.*training\.csv, "
        r"line 2|training\.csv, line 2.* lies entirely outside",
    ):
        split.dataset(32)[index]
    kept, bad = check_images(split, skip_bad=True, image_size=32)
    assert len(kept) == len(split) - 1 and len(bad) == 1 and "outside" in bad[0]["error"]


# ---------------------------------------------------------------------------------------------------------------
# Files that are not UTF-8, digits that are not ASCII


def test_non_utf8_csvs_name_the_file(tmp_path):
    fer = tmp_path / "ferplus"
    generate_ferplus(fer, Splits(train=8, valid=4, test=4), seed=0)
    votes = fer / "fer2013new.csv"
    votes.write_bytes(votes.read_bytes().replace(b"Training", b"Tr\xe4ining", 1))
    with pytest.raises(ValueError, match=r"fer2013new\.csv, line \d+: not UTF-8"):
        load_ferplus(fer, "majority")

    aff = tmp_path / "affectnet"
    generate_affectnet(aff, Splits(train=8, test=4), layout="csv", image_size=32, seed=1)
    lists = aff / "Manually_Annotated_file_lists" / "training.csv"
    lists.write_bytes(lists.read_bytes() + b"caf\xe9/x.jpg,1,1,10,10,,1,0,0\n")
    with pytest.raises(ValueError, match=r"training\.csv.*not UTF-8"):
        load_affectnet(aff)

    raf = tmp_path / "rafdb"
    generate_rafdb(raf, Splits(train=7, test=7), layout="kaggle", lists=False)
    labels = raf / "train_labels.csv"
    labels.write_bytes(labels.read_bytes() + b"train_caf\xe9.jpg,1\n")
    with pytest.raises(ValueError, match=r"train_labels\.csv.*not UTF-8"):
        load_rafdb(raf)


def test_superscript_digits_are_clear_errors(tmp_path):
    fer = tmp_path / "ferplus"
    generate_ferplus(fer, Splits(train=8, valid=4, test=4), seed=0)
    votes = fer / "fer2013new.csv"
    lines = votes.read_text().splitlines()
    fields = lines[3].split(",")
    fields[-1] = "\u00b2"  # "²".isdigit() is True, int("²") raises
    lines[3] = ",".join(fields)
    votes.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"fer2013new\.csv, line 4: vote count for .* got '²'"):
        load_ferplus(fer, "majority")

    raf = tmp_path / "rafdb"
    generate_rafdb(raf, Splits(train=7, test=7), layout="kaggle", lists=False)
    labels = raf / "train_labels.csv"
    lines = labels.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",\u00b2"
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train_labels\.csv, line 3"):
        load_rafdb(raf)
