"""Images reach the models by their declared range, oversized headers are refused by name before decoding, and
Pillow's warnings come back as ours, naming the file."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from atalaia.data.dataset import read_image
from atalaia.data.images import ImageWarning, check_header, pixel_limit, read_8bit, to_8bit
from atalaia.errors import DataError
from atalaia.face.data import read_grey


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header(w: int, h: int, extra: bytes = b"", raw: bytes | None = None) -> bytes:
    raw = b"\0" * 8 if raw is None else raw
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + extra
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def test_16bit_png_is_divided_by_257_not_stretched(tmp_path):
    dim = np.array([[0, 257, 16448, 1000]], np.uint16)  # 0, 1, 64, 3.9 in 8 bits
    Image.fromarray(dim).save(tmp_path / "dim.png")
    Image.fromarray(dim * 2).save(tmp_path / "bright.png")
    assert Image.open(tmp_path / "dim.png").mode.startswith("I;16")
    assert np.asarray(read_8bit(tmp_path / "dim.png", "L")).tolist() == [[0, 1, 64, 4]]
    # the same scene twice as bright stays twice as bright (stretching to the maximum would make them equal)
    assert np.asarray(read_8bit(tmp_path / "bright.png", "L")).tolist() == [[0, 2, 128, 8]]
    a = read_image(tmp_path / "dim.png", (1, 4), 1)
    assert a.shape == (1, 4, 1) and a.dtype == np.uint8
    face = read_grey(tmp_path / "dim.png", 4)
    assert face.shape == (4, 4) and face.max() <= 64  # the face reader shares the conversion


def test_other_modes_by_their_declared_range(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "unit.tif")
    assert np.asarray(read_8bit(tmp_path / "unit.tif", "L")).tolist() == [[0, 128, 255]]
    Image.fromarray(np.array([[0.0, 100.0, 255.0]], np.float32)).save(tmp_path / "bytes.tif")
    assert np.asarray(read_8bit(tmp_path / "bytes.tif", "L")).tolist() == [[0, 100, 255]]
    Image.fromarray(np.array([[0.0, 1000.0]], np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(DataError, match=r"hdr\.tif.*neither \[0, 1\] nor \[0, 255\]"):
        read_8bit(tmp_path / "hdr.tif", "L")
    i = Image.fromarray(np.array([[0, 257, 65535]], np.int32))  # 'I' with no declared depth: 16 bits
    assert i.mode == "I" and np.asarray(to_8bit(i, "mem")).tolist() == [[0, 1, 255]]
    cmyk = Image.new("CMYK", (2, 2), (0, 0, 0, 0))
    cmyk.save(tmp_path / "c.jpg")
    assert np.asarray(read_8bit(tmp_path / "c.jpg", "RGB")).shape == (2, 2, 3)


def test_declared_size_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header(12000, 12000))
    with pytest.raises(DataError, match=r"'.*bomb\.png' declares 12000x12000 = 144,000,000 pixels.*"
                                        r"data\.max_image_pixels \(50,000,000\)"):
        check_header(tmp_path / "bomb.png")
    (tmp_path / "huge.png").write_bytes(_png_header(14000, 14000))  # beyond Pillow's own hard limit
    with pytest.raises(DataError, match=r"huge\.png' declares 196,000,000 pixels, more than Pillow's safety limit"):
        read_8bit(tmp_path / "huge.png", "L", max_pixels=10**9)
    with pixel_limit(100):
        with pytest.raises(DataError, match="more than data.max_image_pixels"):
            check_header(_small(tmp_path))
    assert check_header(_small(tmp_path)) == (16, 16)


def _small(tmp_path):
    p = tmp_path / "small.png"
    Image.new("L", (16, 16), 3).save(p)
    return p


def test_pillow_warnings_become_ours_naming_the_file(tmp_path):
    raw = b"".join(b"\0" + bytes(range(y, y + 8)) for y in range(8))
    (tmp_path / "apng.png").write_bytes(_png_header(8, 8, _chunk(b"acTL", struct.pack(">II", 0, 0)), raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arr = np.asarray(read_8bit(tmp_path / "apng.png", "L"))
    assert arr.shape == (8, 8)
    assert [w.category for w in caught] == [ImageWarning]
    assert "apng.png" in str(caught[0].message) and "APNG" in str(caught[0].message)


def test_our_limit_decides_not_pillows_warning(tmp_path):
    """10000x10000 is above Pillow's warning threshold (89.5 Mpx): a user who raised data.max_image_pixels
    gets no Pillow warning, only our decision."""
    (tmp_path / "big.png").write_bytes(_png_header(10000, 10000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_header(tmp_path / "big.png", max_pixels=2 * 10**8) == (10000, 10000)
    assert caught == []


def test_transparent_palette_converts_without_warning(tmp_path):
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 255, 255, 255] * 128)
    p.save(tmp_path / "pt.png", transparency=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arr = np.asarray(read_8bit(tmp_path / "pt.png", "L"))
    assert caught == [] and arr.shape == (4, 4) and int(arr[0, 0]) == 255


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"cannot read image '.*zero\.png'"):
        check_header(tmp_path / "zero.png")
    with pytest.raises(DataError, match="image file not found"):
        read_8bit(tmp_path / "nope.png", "L")
    whole = tmp_path / "whole.png"
    Image.new("L", (64, 64), 9).save(whole, compress_level=0)
    (tmp_path / "cut.png").write_bytes(whole.read_bytes()[:300])
    assert check_header(tmp_path / "cut.png") == (64, 64)  # the header is fine...
    with pytest.raises(DataError, match=r"cannot read image '.*cut\.png'"):  # ...the pixels are not
        read_8bit(tmp_path / "cut.png", "L")
