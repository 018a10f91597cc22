"""Consistent teaching (Beyer et al. 2022, "Knowledge distillation: A good teacher is patient and consistent"):
the student is matched to the teacher's embedding of the *same* augmented view it sees.

Without it (``face.loss.consistent_views: 0``) the student sees an in-graph augmentation of a chip (flip, crop,
shift, brightness/contrast) but is pulled towards dlib's embedding of the un-augmented chip. With K > 0 every
training chip gets a fixed set of K augmented views, made here in numpy/Pillow from the stored 112x112 chip
with the same augmentation ranges as the in-graph one (`atalaia.face.train`), and dlib embeds each view once:

    view v of a chip = make_view(chip, view_params(sha256(chip file bytes), v))    deterministic, no RNG state
    teacher target   = dlib ResNet of that 112 view (resized to 150; in the chip's stored colour)
    student input    = the same view, grey, centre-cropped (face.crop) and resized to the student input

The expensive part, dlib's embedding (~0.1-0.4 s per view on one core), is cached on disk per view, keyed by
content: SHA-256 of the chip file's bytes + the augmentation ranges + K + the view index (`view_key`). The
assembled arrays (views (N, K, S, S, 1) uint8, targets (N, K, 128) float32) are cached as .npy files keyed by
every view key + the student size and crop, and opened memory-mapped (37k chips x 4 views at 64x64 is 600 MB).
A run that adds chips embeds only the new views; an interrupted run keeps what it had embedded (the cache is
saved every few thousand views and on the way out). dlib uses one core per call, so `workers` > 1 embeds in
that many processes (same embeddings).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atalaia.data.images import read_8bit
from atalaia.errors import DataError
from atalaia.face.data import grey_resize
from atalaia.ioutil import atomic_write_bytes

VIEWS_VERSION = "views-v1"
SAVE_EVERY = 2000  # views embedded between two saves of the teacher cache


@dataclass(frozen=True)
class ViewSpec:
    """Augmentation ranges of a view (fractions of the chip side; brightness in [0, 1] pixel units). The same
    ranges as the in-graph augmentation of `atalaia.face.train`: mild, because dlib's framing is fixed."""

    flip: float = 0.5
    side: tuple[float, float] = (0.88, 1.0)
    shift: float = 0.04
    contrast: tuple[float, float] = (0.75, 1.25)
    brightness: float = 0.12


def view_params(chip_sha: str, v: int, spec: ViewSpec = ViewSpec()) -> dict[str, Any]:
    """The parameters of view `v` of the chip whose file hashes to `chip_sha`: a pure function of both."""
    seed = int(hashlib.sha256(f"{VIEWS_VERSION}|{chip_sha}|{v}".encode()).hexdigest()[:16], 16)
    rng = np.random.default_rng(seed)
    return {"flip": bool(rng.uniform() < spec.flip), "side": float(rng.uniform(*spec.side)),
            "cy": float(0.5 + rng.uniform(-spec.shift, spec.shift)),
            "cx": float(0.5 + rng.uniform(-spec.shift, spec.shift)),
            "contrast": float(rng.uniform(*spec.contrast)),
            "brightness": float(rng.uniform(-spec.brightness, spec.brightness))}


def make_view(chip: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """One view of a chip (H, W) or (H, W, 3) uint8 -> same shape: flip, crop a square of `side` centred at
    (cy, cx) (fractions; outside the chip is black, as in tf.image.crop_and_resize) resized back, then
    contrast about the view's mean and brightness."""
    a = np.asarray(chip, np.uint8)
    if p["flip"]:
        a = a[:, ::-1]
    h, w = a.shape[:2]
    m = (h + w) // 8  # black margin: a shifted box may reach past the chip border (Pillow wants it inside)
    pad = ((m, m), (m, m)) + (((0, 0),) if a.ndim == 3 else ())
    im = Image.fromarray(np.pad(a, pad))
    box = (m + (p["cx"] - p["side"] / 2) * w, m + (p["cy"] - p["side"] / 2) * h,
           m + (p["cx"] + p["side"] / 2) * w, m + (p["cy"] + p["side"] / 2) * h)
    x = np.asarray(im.resize((w, h), Image.Resampling.BILINEAR, box=box), np.float32) / 255.0
    x = (x - x.mean()) * p["contrast"] + x.mean() + p["brightness"]
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def view_key(chip_sha: str, v: int, k: int, spec: ViewSpec = ViewSpec()) -> str:
    """Cache key of one view's teacher embedding: chip content + augmentation ranges + K + view index."""
    blob = json.dumps({"chip": chip_sha, "v": v, "k": k, "spec": asdict(spec), "ver": VIEWS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class ConsistentViews:
    """views (N, K, S, S, 1) uint8 (student inputs), targets (N, K, 128) float32 (dlib of each view), and how
    many views dlib embedded in this call (the rest came from the cache)."""

    views: np.ndarray
    targets: np.ndarray
    embedded: int
    cache_files: tuple[str, ...]


def _save_npy(path: Path, a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, a)
    atomic_write_bytes(path, buf.getvalue())


def _chip_sha(f: str | Path) -> str:
    try:
        return hashlib.sha256(Path(f).read_bytes()).hexdigest()
    except OSError as e:
        raise DataError(f"{f}: cannot read the chip for consistent teaching ({e})") from e


def _read_chip(f: str | Path) -> np.ndarray:
    """The stored chip as the teacher sees it: RGB when stored in colour, (H, W) grey when stored grey."""
    with Image.open(f) as im:
        grey = im.mode in ("L", "I;16", "I", "1")
    return np.asarray(read_8bit(f, "L" if grey else "RGB"), np.uint8)


_WORKER: Any = None  # the DlibEmbedder of a worker process


def _init_worker() -> None:
    global _WORKER
    from atalaia.models.dlib_teacher import DlibEmbedder

    _WORKER = DlibEmbedder(cache=None)


def _embed_in_worker(chips: list[np.ndarray]) -> np.ndarray:
    return _WORKER.embed_chips(chips)


class _DlibPool:
    """dlib's embedder in `workers` processes (dlib runs one core per call). Spawned, not forked: the parent
    may hold TensorFlow's threads. Each worker loads its own DlibEmbedder, so embeddings are the same as in
    one process."""

    def __init__(self, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self._ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker)

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        parts = [chips[i :: self.workers] for i in range(self.workers)]
        out = np.zeros((len(chips), 128), np.float32)
        for i, e in enumerate(self._ex.map(_embed_in_worker, [p for p in parts if p])):
            out[i :: self.workers] = e
        return out

    def close(self) -> None:
        self._ex.shutdown(cancel_futures=True)


def consistent_views(files: Sequence[str | Path], size: int, *, k: int, cache_dir: str | Path, crop: float = 1.0,
                     spec: ViewSpec = ViewSpec(), embedder: Any = None, workers: int = 1,
                     progress: Callable[[int], None] | None = None,
                     log: Callable[[str], None] | None = None) -> ConsistentViews:
    """The K views of every chip file and dlib's embedding of each (see the module docstring). `embedder`: a
    `DlibEmbedder` (default: one without its own cache, or `workers` > 1 processes of them; this function
    caches by view key)."""
    if k < 1:
        raise DataError(f"face.loss.consistent_views must be >= 1 here, got {k}")
    cdir = Path(cache_dir)
    cdir.mkdir(parents=True, exist_ok=True)
    shas = [_chip_sha(f) for f in files]
    keys = [[view_key(s, v, k, spec) for v in range(k)] for s in shas]
    tag = hashlib.sha256(("|".join(sum(keys, [])) + f"|{size}|{crop:g}").encode()).hexdigest()[:16]
    vpath, tpath = cdir / f"views_{k}x{size}_{tag}.npy", cdir / f"view_targets_{k}_{tag}.npy"
    if vpath.is_file() and tpath.is_file():
        return ConsistentViews(np.load(vpath, mmap_mode="r"), np.load(tpath), 0, (str(vpath), str(tpath)))
    from atalaia.models.dlib_teacher import EmbeddingCache

    cache = EmbeddingCache(cdir / "view_teacher_cache.npz")
    todo = sum(1 for row in keys for key in row if key not in cache)
    if log:
        log(f"[views] {len(files)} chips x {k} views: {todo} view(s) to embed with dlib, the rest cached")
    pool = None
    if todo and embedder is None:
        from atalaia.models.dlib_teacher import DlibEmbedder

        embedder = pool = _DlibPool(workers) if workers > 1 else DlibEmbedder(cache=None)
    views = np.zeros((len(files), k, size, size, 1), np.uint8)
    targets = np.zeros((len(files), k, 128), np.float32)
    pending: list[tuple[int, int, np.ndarray]] = []  # (chip, view, 112 view) waiting for dlib
    batch = 32 * max(1, workers)
    done = [0, 0]  # views embedded, of which saved

    def flush() -> None:
        if pending:
            for (i, v, _), e in zip(pending, embedder.embed_chips([p[2] for p in pending]), strict=True):
                cache.put(keys[i][v], e)
                targets[i, v] = e
            done[0] += len(pending)
            pending.clear()
        if done[0] - done[1] >= SAVE_EVERY:
            cache.save()
            done[1] = done[0]

    try:
        for i, (f, sha) in enumerate(zip(files, shas, strict=True)):
            chip = _read_chip(f)
            v112 = [make_view(chip, view_params(sha, v, spec)) for v in range(k)]
            views[i] = grey_resize(np.stack(v112), size, crop)
            for v in range(k):
                hit = cache.get(keys[i][v])
                if hit is None:
                    pending.append((i, v, v112[v]))
                else:
                    targets[i, v] = hit
            if len(pending) >= batch:
                flush()
            if progress:
                progress(i + 1)
        flush()
    finally:
        cache.save()  # an interrupted run keeps every view it embedded
        if pool is not None:
            pool.close()
    _save_npy(tpath, targets)
    _save_npy(vpath, views)
    return ConsistentViews(np.load(vpath, mmap_mode="r"), targets, done[0], (str(vpath), str(tpath)))


__all__ = ["ConsistentViews", "ViewSpec", "consistent_views", "make_view", "view_key", "view_params"]
