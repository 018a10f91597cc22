"""Opening image files safely: the declared size is checked before any pixel is decoded, every pixel mode is
brought to 8 bits by its *declared* range, and Pillow's warnings become our own messages naming the file.

Why: a 190 KB PNG can declare 14000x14000 pixels (~600 MB once decoded) and Pillow then stops the run with an
error that names no file; a 16-bit PNG scaled by its own maximum silently changes the data (two exposures of the
same face would come out equally bright). Here a 16-bit image is divided by 257 (65535 -> 255), like every
camera pipeline does, whatever its content.

The pixel limit is `data.max_image_pixels` in a recipe: pass it as `max_pixels`, or set it for a whole run with
`pixel_limit(n)` (what the CLI does around the pipeline).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from atalaia.errors import AtalaiaWarning, DataError

#: Default refusal threshold (pixels declared in the header): 50 Mpx is a 8660x5773 photo, far above any face
#: crop, and decodes to at most 150 MB of RGB. Recipes change it with `data.max_image_pixels`.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

_LIMIT: contextvars.ContextVar[int] = contextvars.ContextVar("atalaia_max_image_pixels",
                                                             default=DEFAULT_MAX_IMAGE_PIXELS)

#: Modes we convert; anything else (e.g. a future Pillow mode) is refused by name rather than guessed.
SUPPORTED_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                             "LAB", "HSV", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


class ImageWarning(AtalaiaWarning):
    """Something Pillow noticed about one file (corrupt EXIF, odd palette...): reworded with the file name."""


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Use `max_pixels` as the limit of every image read inside the block that does not pass its own."""
    token = _LIMIT.set(int(max_pixels))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def _too_big(path: Path, w: int, h: int, limit: int) -> DataError:
    return DataError(f"image '{path}' declares {w}x{h} = {w * h:,} pixels, more than data.max_image_pixels "
                     f"({limit:,}); shrink or remove the file, or raise data.max_image_pixels if it is genuine")


def _unreadable(path: Path, e: BaseException) -> DataError:
    msg = " ".join(str(e).split())
    return DataError(f"cannot read image '{path}': {type(e).__name__}: {msg}. Remove or replace the file and run "
                     "again.")


@contextlib.contextmanager
def open_image(path: str | Path | BinaryIO, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """Open lazily (header only) and refuse a file whose declared size or mode we will not decode.

    `path` may also be an open binary file (an upload held in memory): it is named "the upload" in messages.

    Pillow warnings raised inside the block are re-issued as `ImageWarning` naming the file; Pillow's own
    decompression-bomb warning is dropped because our limit has already decided (a user may raise it)."""
    path = path if hasattr(path, "read") else Path(path)
    limit = _LIMIT.get() if max_pixels is None else int(max_pixels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as e:  # > 2x Pillow's own limit: refused before ours could look
            nums = [int(x) for x in re.findall(r"(\d+) pixels", str(e))]
            declared, pillow = (nums + [0, 0])[:2]
            over = (f"data.max_image_pixels ({limit:,})" if declared > limit
                    else f"Pillow's safety limit ({pillow:,}), which AtalaIA does not lift")
            raise DataError(f"image '{path}' declares {declared:,} pixels, more than {over}; shrink or remove "
                            "the file") from None
        except FileNotFoundError:
            raise DataError(f"image file not found: '{path}'") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
            raise _unreadable(path, e) from None
        try:
            w, h = im.size
            if w * h > limit:
                raise _too_big(path, w, h, limit)
            if w < 1 or h < 1:
                raise DataError(f"image '{path}' declares an empty size {w}x{h}; remove the file")
            if im.mode not in SUPPORTED_MODES:
                raise DataError(f"image '{path}' has pixel mode '{im.mode}', which AtalaIA does not convert; "
                                "save it as 8-bit grey or RGB")
            yield im
        finally:
            im.close()
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            continue
        warnings.warn(ImageWarning(f"image '{path}': {' '.join(str(w.message).split())}"), stacklevel=3)


def check_header(path: str | Path, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) from the header alone, or DataError naming the file (unreadable, too big, odd mode)."""
    with open_image(path, max_pixels) as im:
        return im.size


def _declared_bits(im: Image.Image) -> int | None:
    """Bit depth the file declares for an 'I' image: TIFF BitsPerSample, PNG (16-bit grey opens as 'I' in
    some Pillow versions); None when the format says nothing."""
    tags = getattr(im, "tag_v2", None)
    if tags is not None and 258 in tags:
        bits = tags[258]
        return int(bits[0] if isinstance(bits, tuple) else bits)
    if im.format == "PNG":
        return 16
    return None


def to_8bit(im: Image.Image, path: str | Path) -> Image.Image:
    """Any supported mode -> an 8-bit image ('L', 'RGB', 'RGBA', ...) scaled by the mode's declared range.

    16-bit: value / 257 (65535 -> 255). 32-bit integer 'I': by the declared bit depth (16 when a PNG or TIFF
    says so or no depth is declared and every value fits in 16 bits). Float 'F': [0, 1] -> x 255, [0, 255]
    kept. Never by the image's own maximum: that would make every image equally bright."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        bits = 16 if mode.startswith("I;16") else _declared_bits(im)
        if bits is None:
            bits = 16 if arr.size == 0 or (arr.min() >= 0 and arr.max() <= 65535) else 32
        if bits <= 8:
            scaled = arr
        elif bits == 16:
            scaled = arr / 257.0
        else:  # signed 32-bit: the full int32 range onto 0..255
            scaled = (arr + 2.0**31) / (2.0**32 - 1) * 255.0
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    if mode == "F":
        arr = np.asarray(im).astype(np.float64)
        if not np.isfinite(arr).all():
            raise DataError(f"image '{path}' has NaN or infinite pixels; replace the file")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            arr = arr * 255.0
        elif not (lo >= 0.0 and hi <= 255.0):
            raise DataError(f"image '{path}' has float pixels in [{lo:g}, {hi:g}], neither [0, 1] nor [0, 255]; "
                            "save it as 8-bit grey or RGB")
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    if mode in ("P", "PA") and "transparency" in im.info:
        return im.convert("RGBA")  # Pillow warns when a transparent palette goes straight to L/RGB
    if mode in ("LAB", "HSV"):
        return im.convert("RGB")
    return im


def read_8bit(path: str | Path | BinaryIO, mode: str, max_pixels: int | None = None) -> Image.Image:
    """Decode one file into a loaded 8-bit Pillow image of `mode` ('L' or 'RGB'); DataError naming the file."""
    with open_image(path, max_pixels) as im:
        try:
            im.load()
            return to_8bit(im, path).convert(mode)
        except DataError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
            raise _unreadable(path, e) from None


__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "ImageWarning", "SUPPORTED_MODES", "check_header", "open_image",
           "pixel_limit", "read_8bit", "to_8bit"]
