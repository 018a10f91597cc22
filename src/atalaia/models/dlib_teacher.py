"""Pretrained face teacher: dlib's ResNet 128-d face embedder (``dlib_face_recognition_resnet_model_v1.dat``).

The weights ship inside the ``face_recognition_models`` wheel (nothing downloads at run time). dlib's network
takes 150x150 RGB chips cropped by ``dlib.get_face_chip(size=150, padding=0.25)``; our chips are the same crop
saved at 112x112, so they are resized back to 150x150 (Pillow LANCZOS) before embedding — the measured drift
against embeddings computed on the original 150 chip is ~0.035 L2 (dlib's same-person threshold is 0.6).
Grey chips are replicated to 3 channels, as for the stored LFW embeddings.

Embedding costs ~0.1 s per chip on one CPU core, so :class:`EmbeddingCache` keeps results on disk keyed by the
SHA-256 of the chip's pixels (plus shape and a recipe tag), and re-runs only embed new chips.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atalaia.errors import DataError
from atalaia.ioutil import atomic_write_bytes

EMBED_DIM = 128
INPUT_SIZE = 150
#: Part of every cache key: change it when the preprocessing or the model changes.
RECIPE_TAG = "dlib_resnet_v1/frm0.3.0/lanczos150/grey3/jit0"

_INSTALL_HINT = (
    "the dlib teacher needs dlib: pip install 'atalaia[face]' (dlib-bin + face-recognition-models)"
)


def _import_dlib() -> tuple[Any, Any]:
    """Import ``dlib`` and locate the ``face_recognition_models`` weights, or raise ImportError with the fix."""
    from atalaia.models.dlib_weights import import_dlib as _locate

    return _locate()


def chip_key(chip: np.ndarray, tag: str = RECIPE_TAG) -> str:
    """Cache key of one chip: SHA-256 over recipe tag, shape, dtype and pixel bytes."""
    a = np.ascontiguousarray(chip)
    h = hashlib.sha256()
    h.update(f"{tag}|{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """On-disk map ``chip key -> float32 (128,)`` stored as one ``.npz`` (``keys`` str array, ``emb`` array).

    Loaded on construction, written atomically by :meth:`save` (a reader never sees a half-written file).
    Not a concurrent store: two processes saving the same path keep the last writer's content.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._data: dict[str, np.ndarray] = {}
        self._dirty = False
        self._lock = threading.Lock()
        if self.path.exists():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    keys, emb = z["keys"], z["emb"]
            except (OSError, ValueError, KeyError) as e:
                raise DataError(
                    f"embedding cache {self.path} is unreadable ({e}); delete it to rebuild"
                ) from e
            if emb.ndim != 2 or len(keys) != len(emb):
                raise DataError(
                    f"embedding cache {self.path} is inconsistent: {len(keys)} keys, emb {emb.shape}"
                )
            self._data = {str(k): emb[i].astype(np.float32) for i, k in enumerate(keys)}

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> np.ndarray | None:
        return self._data.get(key)

    def put(self, key: str, emb: np.ndarray) -> None:
        with self._lock:
            self._data[key] = np.asarray(emb, dtype=np.float32).reshape(-1)
            self._dirty = True

    def save(self) -> None:
        """Write the cache atomically (no-op when nothing changed)."""
        with self._lock:
            if not self._dirty:
                return
            keys = np.array(list(self._data), dtype=str)
            emb = np.stack(list(self._data.values())) if self._data else np.zeros((0, EMBED_DIM), np.float32)
            buf = io.BytesIO()
            np.savez(buf, keys=keys, emb=emb.astype(np.float32))
            atomic_write_bytes(self.path, buf.getvalue())
            self._dirty = False


class DlibEmbedder:
    """dlib ResNet face embedder (the pretrained teacher).

    ``cache``: an :class:`EmbeddingCache`, a path for one (created on first save), or None.
    ``batch_size``: chips per dlib call (bounds memory). ``num_jitters``: dlib's test-time augmentation
    (0 = off, the recipe of the stored embeddings).
    """

    def __init__(
        self, *, cache: EmbeddingCache | str | Path | None = None, batch_size: int = 32, num_jitters: int = 0
    ) -> None:
        dlib, frm = _import_dlib()
        self._rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.cache = EmbeddingCache(cache) if isinstance(cache, (str, Path)) else cache
        self.batch_size = int(batch_size)
        self.num_jitters = int(num_jitters)
        self._tag = RECIPE_TAG if num_jitters == 0 else RECIPE_TAG.replace("jit0", f"jit{num_jitters}")

    @staticmethod
    def preprocess(chip: np.ndarray) -> np.ndarray:
        """One chip (H, W), (H, W, 1) or (H, W, 3) uint8 -> contiguous (150, 150, 3) uint8 RGB."""
        a = np.asarray(chip)
        if a.dtype != np.uint8:
            raise DataError(f"chips must be uint8 (0..255), got {a.dtype}")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] != 3:
            raise DataError(f"a chip must be (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
        if a.shape[0] != a.shape[1]:
            raise DataError(f"chips must be square dlib face chips, got {a.shape[1]}x{a.shape[0]}")
        if a.shape[0] != INPUT_SIZE:
            a = np.asarray(Image.fromarray(a).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.LANCZOS))
        return np.ascontiguousarray(a, dtype=np.uint8)

    def embed_chips(self, chips_uint8: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """Embed aligned chips (N, S, S, 3|1) or (N, S, S) uint8 (S = 112 usually) -> (N, 128) float32.

        Embeddings are dlib's (unit-ish norm, compare with Euclidean distance, same person < 0.6).
        """
        chips = list(chips_uint8) if not isinstance(chips_uint8, np.ndarray) else chips_uint8
        if isinstance(chips, np.ndarray) and chips.ndim not in (3, 4):
            raise DataError(f"expected a batch (N, H, W[, C]) of chips, got shape {chips.shape}")
        n = len(chips)
        out = np.zeros((n, EMBED_DIM), dtype=np.float32)
        todo: list[int] = []
        keys: list[str | None] = [None] * n
        for i in range(n):
            if self.cache is not None:
                k = chip_key(chips[i], self._tag)
                keys[i] = k
                hit = self.cache.get(k)
                if hit is not None:
                    out[i] = hit
                    continue
            todo.append(i)
        for s in range(0, len(todo), self.batch_size):
            idx = todo[s : s + self.batch_size]
            batch = [self.preprocess(chips[i]) for i in idx]
            vecs = self._rec.compute_face_descriptor(batch, self.num_jitters)
            for i, v in zip(idx, vecs, strict=True):
                out[i] = np.asarray(v, dtype=np.float32)
                if self.cache is not None:
                    self.cache.put(keys[i], out[i])  # type: ignore[arg-type]
        if self.cache is not None and todo:
            self.cache.save()
        return out


__all__ = ["DlibEmbedder", "EmbeddingCache", "EMBED_DIM", "RECIPE_TAG", "chip_key"]
