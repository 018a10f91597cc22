"""Recipes: frozen dataclasses loaded from YAML, with unknown keys rejected by name.

A recipe is everything a run depends on. It is saved resolved (every default filled in) beside the run's
outputs, so any number in a report can be regenerated from that one file.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from atalaia.errors import RecipeError

PACKAGE_DIR = Path(__file__).resolve().parent

#: Keys that only refuse bad input and never change a result: left out of stage keys, so adding or changing
#: them does not re-run finished stages.
_NOT_HASHED = (("data", "max_image_pixels"),)

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation. Shifts and crops are fractions of the image side."""

    flip: bool = True
    shift: float = 0.08
    zoom: float = 0.08
    brightness: float = 0.15
    contrast: float = 0.15


@dataclass(frozen=True)
class DataConfig:
    """An identity-folder dataset (`root/<identity>/<image>`) and how to split and shape it.

    `root` is resolved relative to the recipe file; the special prefix `bundled:` points inside the repo's `data/`.
    """

    root: str = "bundled:orl_att_faces"
    image_size: tuple[int, int] = (32, 32)
    channels: int = 1
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    min_images_per_class: int = 3
    max_classes: int | None = None
    max_image_pixels: int = 50_000_000  # an image declaring more pixels is refused before it is decoded
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained from scratch (teacher and baseline student share it)."""

    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "ds_cnn"
    width: float = 1.0


@dataclass(frozen=True)
class DistillConfig:
    """Hinton KD. Convention: loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T).

    alpha weighs the hard labels; (1 - alpha) the teacher. The thesis searched alpha in {0.01, 0.1, 0.25, 0.5}
    and T in {2, 5, 7, 10, 12, 15, 17, 20}.
    """

    alpha: float = 0.1
    temperature: float = 5.0
    tune: bool = False


@dataclass(frozen=True)
class MagnitudePruneConfig:
    enabled: bool = True
    target_sparsity: float = 0.5
    epochs: int = 8
    begin_fraction: float = 0.0
    end_fraction: float = 0.7
    frequency: int = 10


@dataclass(frozen=True)
class ChannelPruneConfig:
    enabled: bool = True
    ratio: float = 0.5
    criterion: str = "l1"
    epochs: int = 20


@dataclass(frozen=True)
class PruneConfig:
    magnitude: MagnitudePruneConfig = field(default_factory=MagnitudePruneConfig)
    channel: ChannelPruneConfig = field(default_factory=ChannelPruneConfig)


@dataclass(frozen=True)
class QuantizeConfig:
    representative_samples: int = 128
    per_channel: bool = True
    strip_strings: bool = True  # drop tensor names/signatures from the .tflite (TFLM never reads them; ~4 % flash)


@dataclass(frozen=True)
class EvaluateConfig:
    latency_runs: int = 50
    targets: tuple[str, ...] = ("esp32", "esp32s3")


@dataclass(frozen=True)
class FaceLossConfig:
    """How the face-embedding student is trained (`face.loss`): the training spec of `atalaia.face.train`.

    Every field here changes the trained student, so the student stage's key is this object (with `train`,
    `student`, the data and the architecture fields of `face`); nothing else of `face` retrains it.
    """

    margin: str = "cosface"  # cosface | arcface | none
    margin_m: float = 0.35
    margin_s: float = 30.0
    ce_weight: float = 1.0
    kd_weight: float = 1.0  # cosine embedding KD through a learned projection
    rkd_weight: float = 1.0  # relational KD: in-batch cosine-similarity matrices
    kd_projection: bool = False  # force the learned projection even when embedding_dim == 128 (always on otherwise)
    head_init: str = "teacher"  # margin head init: teacher class centroids (shared 128-d space) | random
    center_teacher: bool = True  # distil the teacher embeddings minus their mean (dlib's are 91 % one direction)
    anchor_kd_weight: float = 0.0  # KD of the similarity to every training identity's centroid (0 = off)
    anchor_kd_scale: float = 10.0  # 1 / temperature of that softmax
    images_per_identity: int = 0  # K >= 2: batches of batch_size / K identities x K chips; 0 = random batches
    sampling: str = "uniform"  # uniform: every chip once per epoch | balanced: every identity equally often
    consistent_views: int = 0  # K > 0: K fixed augmented views per chip with dlib's embedding of each (cached)
    augment: bool = True
    warmup_epochs: float = 1.0


@dataclass(frozen=True)
class FaceConfig:
    """Face-embedding (open-set) recipes only: `task: verification`. Owned by `atalaia.face`.

    Paths (`train_sets`, `lfw_root`, `cache_dir`) resolve relative to the recipe file. The student input is
    `data.image_size` (square) with `data.channels` 1 (grey); epochs/batch/lr come from `train`, the student
    from `student`, the loss from `face.loss`, pruning from `prune.channel`, PTQ from `quantize`, targets from
    `evaluate`. The loss fields may also be written flat (`face.kd_weight`, as before `face.loss` existed).
    """

    train_sets: tuple[str, ...] = ()  # chip-set folders: labels.csv (chip, identity) + chips [+ dlib_resnet128.npz]
    lfw_root: str = ""  # folder with pairs file and <name>/<name>_NNNN.jpg chips (or chips112_gray/ inside)
    pairs: str = "pairs.txt"  # relative to lfw_root
    cache_dir: str = ""  # decoded-chip + teacher-embedding cache; "" = <run dir>/cache
    embedding_dim: int = 128
    crop: float = 1.0  # centre crop (fraction of the chip side) before resizing to the input: student only
    student_head: str = "gdc"  # gdc (global depthwise conv, MobileFaceNet-style) | gap (global average pooling)
    loss: FaceLossConfig = field(default_factory=FaceLossConfig)
    finetune_lr_scale: float = 0.3  # channel-pruning fine-tune learning rate = train.learning_rate * this
    min_images_per_identity: int = 2  # fewer -> the chips are used unlabelled (KD only)
    exclude_lfw_overlap: bool = True  # leave out the identities of each set's lfw_overlap.csv (LFW people)
    max_train_chips: int | None = None  # subsample for quick runs / tests (None = all)
    teacher_embeddings: str = "stored"  # stored (dlib_resnet128.npz beside the chips, dlib for the rest) | recompute
    enrol_per_identity: int = 5  # open-set: templates enrolled per person
    open_set_min_images: int = 10  # open-set: people with at least this many LFW images take part
    tflm_max_images: int | None = None  # cap the images run through the TFLM interpreter (None = all)
    mirror_tta: bool = False  # embed each face and its mirror image, average the unit embeddings (2 runs/face)
    tier: str = ""  # size tier the recipe targets: S | M (atalaia.face.budget) | "" none; labels benchmark rows


@dataclass(frozen=True)
class DetectionConfig:
    """Face-detection recipes only: `task: detection` (`atalaia.pipeline.detection`).

    The input is `data.image_size` [H, W] (grey, multiples of 8); epochs/batch/lr from `train`, the detector
    width from `student.width`, pruning from `prune.channel`, PTQ from `quantize`, targets from `evaluate`.
    `frames_root` (a face_frames folder) resolves relative to the recipe file.
    """

    frames_root: str = ""
    landmarks: str = "lm5"  # labels.csv column: dlib's 5 points (what the recogniser's chip template uses)
    max_frames: int | None = None  # cap frames per split (quick runs / tests; None = all)
    score_threshold: float = 0.5  # operating point: recall, NME, FP per empty frame, the device's decision
    eval_threshold: float = 0.05  # detections kept down to this score for AP / PR curves
    nms_iou: float = 0.4
    max_detections: int = 16
    aug_scale: tuple[float, float] = (0.5, 1.4)  # zoom relative to the letterbox scale
    aug_shift: float = 0.25
    aug_flip: bool = True
    example_frames: int = 12  # test frames drawn with boxes and landmarks in the report


@dataclass(frozen=True)
class Recipe:
    name: str = "default"
    task: str = "classification"  # "classification" (closed-set identities) | "verification" (face embeddings)
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher: ModelConfig = field(default_factory=lambda: ModelConfig(name="teacher_resnet", width=1.0))
    student: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    base_dir: str = "."  # where relative paths resolve; set by load_recipe to the recipe's folder

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("base_dir")
        return _lists(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, base_dir: str = ".", source: str = "recipe") -> Recipe:
        return dataclasses.replace(_build(cls, d, source), base_dir=base_dir)

    def section_hash(self, *sections: str) -> str:
        """Stable hash of some recipe sections: a stage's cache key is the hash of what it depends on."""
        d = self.to_dict()
        for section, key in _NOT_HASHED:
            d[section].pop(key, None)
        blob = json.dumps({s: d[s] for s in sections}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def data_root(self) -> Path:
        root = self.data.root
        if root.startswith("bundled:"):
            return bundled_data_dir() / root.split(":", 1)[1]
        p = Path(root).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()


def bundled_data_dir() -> Path:
    """The repo's `data/` folder (editable install) — the default run's data ships with the code."""
    for cand in (PACKAGE_DIR.parent.parent / "data", PACKAGE_DIR / "data_bundled"):
        if cand.is_dir():
            return cand
    raise RecipeError("bundled data folder not found; install AtalaIA from a clone (pip install -e .)")


def _lists(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x


def _build(cls: type, d: Any, where: str) -> Any:
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(d).__name__}")
    if cls is FaceConfig:
        d = _nest_face_loss(d)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "base_dir"]
    kwargs = {}
    for key, value in d.items():
        if key not in names:
            spellings = names + ([f.name for f in dataclasses.fields(FaceLossConfig)] if cls is FaceConfig else [])
            near = difflib.get_close_matches(str(key), spellings, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(names)}"
            raise RecipeError(f"{where}: unknown key '{key}'{hint}")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _nest_face_loss(d: dict[str, Any]) -> dict[str, Any]:
    """Recipes written before `face.loss` existed keep working: flat loss keys move into `face.loss`."""
    loss_names = {f.name for f in dataclasses.fields(FaceLossConfig)}
    flat = {k: v for k, v in d.items() if k in loss_names}
    if not flat:
        return d
    nested = d.get("loss") or {}
    if not isinstance(nested, dict):
        return d  # _coerce reports the bad type
    both = sorted(set(flat) & set(nested))
    if both:
        raise RecipeError(f"face: '{both[0]}' is given both flat and under face.loss; keep one")
    return {**{k: v for k, v in d.items() if k not in loss_names}, "loss": {**nested, **flat}}


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise RecipeError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # PyYAML reads 1e-3 (no dot, no exponent sign) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .inf/.nan parse as floats; every number here must be finite
            raise RecipeError(f"{where}: expected a finite number, got {value!r}")
        if tp is int and not isinstance(value, int) and float(value) != int(value):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["train.epochs=5", "data.image_size=[64, 64]"]` -> {"train.epochs": 5, ...} (values parsed as YAML).

    A value that is not valid YAML is a RecipeError naming the `--set` argument and the column."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise RecipeError(f"--set expects KEY=VALUE (e.g. train.epochs=5), got '{item}'")
        k, v = item.split("=", 1)
        key = k.strip()
        if not key or any(not part.strip() for part in key.split(".")):
            raise RecipeError(f"--set '{item}': empty key; expected KEY=VALUE (e.g. train.epochs=5)")
        try:
            out[key] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            col = _yaml_position(e)
            at = f" at column {len(k) + 1 + col[1]}" if col else ""
            raise RecipeError(f"--set '{item}': value is not valid YAML{at} ({_yaml_problem(e)}); "
                              "quote lists like 'data.image_size=[64, 64]'") from None
    return out


def _yaml_position(e: yaml.YAMLError) -> tuple[int, int] | None:
    """1-based (line, column) of a YAML error, if PyYAML knows it."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    return (mark.line + 1, mark.column + 1) if mark is not None else None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's explanation on one line (its messages span several lines with a source excerpt)."""
    text = getattr(e, "problem", None) or str(e).splitlines()[0]
    return " ".join(str(text).split())


def load_recipe(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Recipe:
    """Load a YAML recipe (None = the bundled default), apply dotted overrides, validate."""
    if path is None:
        path = PACKAGE_DIR / "recipes" / "default.yaml"
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          "save the recipe as UTF-8") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read the recipe ({e.strerror or e})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        pos = _yaml_position(e)
        at = f":{pos[0]}:{pos[1]}" if pos else ""
        raise RecipeError(f"{path}{at}: not valid YAML ({_yaml_problem(e)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections (name:, data:, train: ...), "
                          f"got a {type(raw).__name__}")
    if isinstance(raw.get("face"), dict):
        raw["face"] = _nest_face_loss(raw["face"])
    loss_names = {f.name for f in dataclasses.fields(FaceLossConfig)}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        if parents == ["face"] and leaf in loss_names:  # the flat spelling of a face.loss key
            parents = ["face", "loss"]
        for i, p in enumerate(parents):
            section = ".".join(parents[: i + 1])
            if _field_type(section) not in (None, "section"):
                raise RecipeError(f"--set {dotted}=...: '{section}' is a value, not a section; "
                                  f"use --set {section}=VALUE")
            child = node.setdefault(p, {})
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"--set {dotted}=...: '{section}' in {path.name} is not a section")
            node = child
        node[leaf] = value
    try:
        recipe = Recipe.from_dict(raw, base_dir=str(path.resolve().parent), source=path.name)
    except RecipeError as e:  # name the --set argument when the bad value came from one
        msg = str(e)
        for dotted in overrides or {}:
            where = f"{path.name}.{dotted}"
            parent, _, leaf = f"{path.name}.{dotted}".rpartition(".")
            if msg.startswith(where + ":") or msg.startswith(where + "."):
                raise RecipeError(f"--set {dotted}{msg[len(where):]}") from None
            if msg.startswith(f"{parent}: unknown key '{leaf}'"):
                raise RecipeError(f"--set {dotted}: {msg[len(parent) + 2:]}") from None
        raise
    validate(recipe)
    return recipe


def _field_type(dotted: str) -> str | None:
    """'section' if `dotted` names a recipe section, 'value' if a leaf field, None if unknown (the error for
    an unknown key, with its suggestion, comes later from `_build`)."""
    cls: Any = Recipe
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cls):
            return "value"
        hints = typing.get_type_hints(cls)
        if part not in hints or part == "base_dir":
            return None
        cls = hints[part]
    return "section" if dataclasses.is_dataclass(cls) else "value"


def validate(r: Recipe) -> None:
    """Range checks that name the field and what is allowed."""
    checks = [
        (r.task in ("classification", "verification", "detection"),
         "task must be 'classification', 'verification' or 'detection'"),
        (bool(r.name.strip()) and not any(c in r.name for c in "/\\\0") and r.name not in (".", ".."),
         "name must be a non-empty folder name without '/' (the run folder is runs/<name>)"),
        (len(r.data.image_size) == 2 and 8 <= min(r.data.image_size) and max(r.data.image_size) <= 1024,
         "data.image_size must be [H, W] with 8 <= H, W <= 1024"),
        (r.data.max_image_pixels >= 64, "data.max_image_pixels must be >= 64"),
        (r.data.max_classes is None or r.data.max_classes >= 2, "data.max_classes must be >= 2 (or null)"),
        (r.data.channels in (1, 3), "data.channels must be 1 (grey) or 3 (RGB)"),
        (abs(sum(r.data.split) - 1.0) < 1e-6 and min(r.data.split) > 0, "data.split must be 3 positive fractions summing to 1"),
        (r.data.min_images_per_class >= 3, "data.min_images_per_class must be >= 3 (one each for train/val/test)"),
        (0 <= r.seed < 2**32, "seed must be in [0, 2^32)"),
        (all(0.0 <= v <= 1.0 for v in (r.data.augment.shift, r.data.augment.zoom, r.data.augment.brightness,
                                       r.data.augment.contrast)),
         "data.augment shift/zoom/brightness/contrast must be in [0, 1]"),
        (r.train.epochs >= 1, "train.epochs must be >= 1"),
        (r.train.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (0.0 <= r.train.label_smoothing < 1.0, "train.label_smoothing must be in [0, 1)"),
        (r.prune.magnitude.epochs >= 0 and r.prune.channel.epochs >= 0, "prune.*.epochs must be >= 0"),
        (r.prune.magnitude.frequency >= 1, "prune.magnitude.frequency must be >= 1"),
        (0.0 <= r.prune.magnitude.begin_fraction < r.prune.magnitude.end_fraction <= 1.0,
         "prune.magnitude: 0 <= begin_fraction < end_fraction <= 1"),
        (r.evaluate.latency_runs >= 1, "evaluate.latency_runs must be >= 1"),
        (r.train.batch_size >= 1, "train.batch_size must be >= 1"),
        (r.train.learning_rate > 0, "train.learning_rate must be > 0"),
        (0.0 <= r.distill.alpha <= 1.0, "distill.alpha must be in [0, 1]"),
        (r.distill.temperature > 0, "distill.temperature must be > 0"),
        (0.0 <= r.prune.magnitude.target_sparsity < 1.0, "prune.magnitude.target_sparsity must be in [0, 1)"),
        (0.0 <= r.prune.channel.ratio < 1.0, "prune.channel.ratio must be in [0, 1)"),
        (r.prune.channel.criterion in ("l1", "l2", "bn_gamma"), "prune.channel.criterion must be l1, l2 or bn_gamma"),
        (r.student.width > 0 and r.teacher.width > 0, "model width must be > 0"),
        (r.quantize.representative_samples >= 1, "quantize.representative_samples must be >= 1"),
        (r.face.embedding_dim >= 8, "face.embedding_dim must be >= 8"),
        (0.3 <= r.face.crop <= 1.0, "face.crop must be in [0.3, 1] (fraction of the chip side kept, centred)"),
        (r.face.loss.margin in ("cosface", "arcface", "none"), "face.margin must be cosface, arcface or none"),
        (r.face.loss.margin_s > 0 and 0.0 <= r.face.loss.margin_m < 1.0, "face.margin_s must be > 0, face.margin_m in [0, 1)"),
        (min(r.face.loss.ce_weight, r.face.loss.kd_weight, r.face.loss.rkd_weight, r.face.loss.anchor_kd_weight) >= 0,
         "face loss weights (ce/kd/rkd/anchor_kd_weight) must be >= 0"),
        (r.face.loss.anchor_kd_scale > 0, "face.anchor_kd_scale must be > 0"),
        (r.face.loss.images_per_identity == 0 or 2 <= r.face.loss.images_per_identity <= r.train.batch_size,
         "face.images_per_identity must be 0 (random batches) or in [2, train.batch_size]"),
        (r.face.loss.head_init in ("teacher", "random"), "face.head_init must be teacher or random"),
        (r.face.loss.sampling in ("uniform", "balanced"), "face.sampling must be uniform or balanced"),
        (0 <= r.face.loss.consistent_views <= 64, "face.consistent_views must be in [0, 64] (0 = off)"),
        (r.face.tier in ("", "S", "M"), "face.tier must be S, M or empty"),
        (r.face.student_head in ("gdc", "gap"), "face.student_head must be gdc or gap"),
        (r.face.teacher_embeddings in ("stored", "recompute"), "face.teacher_embeddings must be stored or recompute"),
        (r.face.enrol_per_identity >= 1 and r.face.open_set_min_images > r.face.enrol_per_identity,
         "face.open_set_min_images must be > face.enrol_per_identity >= 1"),
        (r.face.max_train_chips is None or r.face.max_train_chips >= 2, "face.max_train_chips must be >= 2"),
        (r.face.tflm_max_images is None or r.face.tflm_max_images >= 1, "face.tflm_max_images must be >= 1"),
        (r.face.min_images_per_identity >= 1, "face.min_images_per_identity must be >= 1"),
        (r.task != "verification" or (r.data.image_size[0] == r.data.image_size[1] and r.data.channels == 1),
         "verification recipes need a square data.image_size and data.channels 1 (the LFW chips are grey)"),
        (r.task != "verification" or (bool(r.face.train_sets) and bool(r.face.lfw_root)),
         "verification recipes need face.train_sets and face.lfw_root"),
        (r.task != "detection" or bool(r.detection.frames_root),
         "detection recipes need detection.frames_root (a face_frames folder: images.csv, labels.csv, images/)"),
        (r.task != "detection" or (r.data.channels == 1 and all(s % 8 == 0 and 64 <= s <= 256
                                                                 for s in r.data.image_size)),
         "detection recipes need data.channels 1 and data.image_size [H, W] multiples of 8 in [64, 256]"),
        (0.0 < r.detection.score_threshold < 1.0 and 0.0 < r.detection.eval_threshold <= r.detection.score_threshold,
         "detection.eval_threshold and detection.score_threshold must satisfy 0 < eval <= score < 1"),
        (0.0 < r.detection.nms_iou < 1.0 and r.detection.max_detections >= 1,
         "detection.nms_iou must be in (0, 1) and detection.max_detections >= 1"),
    ]
    for ok, msg in checks:
        if not ok:
            raise RecipeError(msg)


def dump_recipe(r: Recipe) -> str:
    """The recipe as YAML with every data path made absolute, so the copy saved in a run folder reproduces the
    run from wherever it is loaded (relative paths in a recipe file resolve next to that file)."""
    d = r.to_dict()

    def absolute(p: str) -> str:
        if not p or p.startswith("bundled:") or Path(p).expanduser().is_absolute():
            return p
        return str((Path(r.base_dir) / Path(p).expanduser()).resolve())

    d["data"]["root"] = absolute(d["data"]["root"])
    f = d["face"]
    f["train_sets"] = [absolute(p) for p in f["train_sets"]]
    f["lfw_root"], f["cache_dir"] = absolute(f["lfw_root"]), absolute(f["cache_dir"])
    d["detection"]["frames_root"] = absolute(d["detection"]["frames_root"])
    return yaml.safe_dump(d, sort_keys=False)
