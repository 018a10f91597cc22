"""Generated bad recipes and `--set` strings: every one is refused with one line and exit 2 (or accepted as a
valid recipe and handed to the pipeline), never a traceback, never a run folder."""

from __future__ import annotations

import dataclasses
import math
import random
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atalaia.config import Recipe


def fuzz(n: int):
    """Fixed examples per run (derandomize: CI sees the same cases every time), no deadline (shared CPU)."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _keys(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "base_dir":
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.append(prefix + f.name)
            out += _keys(tp, prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


KEYS = _keys(Recipe)
YAML_CHARS = list("[]{}:,'\"!&*#|>-.%@`? \t\n0123456789eE+naifxo_~")
NUMBER_WORDS = [".inf", "-.inf", ".nan", ".NaN", "1e400", "1.0e+400", "-1.0e+400", "-0", "0x10", "0o17", "1_000",
                "~", "null", "yes", "no", "on", "1e-3", "2.", ".5", "[8, 8]", "[1e9, 1e9]", "[0.5, 0.5, 0.5]", "{}",
                "[]", "''", "!!binary aGVsbG8=", "!!python/object:os.system ls", "&a [1]", "*a", "2020-01-01"]

keys = st.one_of(
    st.sampled_from(KEYS),
    st.builds(lambda k, t: f"{k}.{t}", st.sampled_from(KEYS), st.text(max_size=6)),
    st.text(max_size=16),
)
values = st.one_of(
    st.text(alphabet=st.sampled_from(YAML_CHARS), max_size=16),
    st.sampled_from(NUMBER_WORDS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=12),
)
items = st.one_of(st.builds(lambda k, v: f"{k}={v}", keys, values), st.text(max_size=20))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A valid recipe on a 4-identity x 3-image dataset (headers checked in a few ms)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("fuzz")
    for i in range(4):
        (root / "faces" / f"p{i}").mkdir(parents=True)
        for j in range(3):
            Image.new("L", (16, 16), 40 * i + j).save(root / "faces" / f"p{i}" / f"{j}.png")
    recipe = root / "r.yaml"
    recipe.write_text(f"name: fuzz\ndata: {{root: {root / 'faces'}, image_size: [16, 16]}}\n")
    return root, recipe


def _check(o, out: Path, kit) -> None:
    kit.count(1, refused=int(o.code == 2))
    assert o.code in (0, 2), (o.code, o.stderr)
    if o.code == 0:
        assert o.reached_pipeline and not o.stderr.strip(), o.stderr
    else:
        kit.assert_one_line_error(o, out_dir=out)


@fuzz(400)
@given(st.lists(items, min_size=1, max_size=3))
def test_set_strings(base, kit, sets):
    root, recipe = base
    out = root / "out"
    o = kit.invoke("run", str(recipe), "--out", str(out), *(f"--set={s}" for s in sets))
    _check(o, out, kit)
    if o.code == 2 and any("=" not in s for s in sets):
        assert "--set" in o.stderr


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
)
yaml_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)


@fuzz(300)
@given(st.dictionaries(st.sampled_from(KEYS), yaml_values, min_size=1, max_size=4))
def test_recipe_values(base, kit, over):
    root, _ = base
    raw: dict = {"name": "fuzz", "data": {"root": str(root / "faces"), "image_size": [16, 16]}}
    for dotted, v in over.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
        node[leaf] = v
    path = root / "values.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    out = root / "out"
    _check(kit.invoke("run", str(path), "--out", str(out)), out, kit)


@fuzz(250)
@given(st.data())
def test_recipe_file_bytes(base, kit, data):
    """A valid recipe file with bytes flipped, inserted, deleted or the file cut short (encodings included)."""
    root, recipe = base
    blob = bytearray(recipe.read_bytes() + b"train: {epochs: 2, learning_rate: 0.01}\nseed: 3\n")
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    for _ in range(data.draw(st.integers(1, 6))):
        op = rng.choice(("flip", "insert", "delete", "cut", "encode"))
        i = rng.randrange(len(blob)) if blob else 0
        if op == "flip" and blob:
            blob[i] = rng.randrange(256)
        elif op == "insert":
            blob[i:i] = bytes([rng.choice(b"\xff\xfe\x00:[]{}-!&*'\"\n\t #")])
        elif op == "delete" and blob:
            del blob[i]
        elif op == "cut":
            blob = blob[:i]
        elif op == "encode":
            blob = bytearray(bytes(blob).decode("utf-8", "replace").encode(rng.choice(("utf-16", "latin-1", "utf-32")), "replace"))
    path = root / "mutated.yaml"
    path.write_bytes(bytes(blob))
    out = root / "out"
    o = kit.invoke("run", str(path), "--out", str(out))
    _check(o, out, kit)


@pytest.mark.parametrize("text, needle", [
    (b"name: x\ndata: {root: \xff\xfe}\n", "not UTF-8"),
    (b"name: x\ntrain: [1,\n", "r.yaml:3:1: not valid YAML"),
    (b"- a\n- b\n", "a recipe is a mapping"),
    (b"train:\n  epochs: 3\n   batch_size: 4\n", "not valid YAML"),
    (b"train: {learning_rate: .inf}\n", "train.learning_rate: expected a finite number"),
    (b"distill: {temperature: .nan}\n", "distill.temperature: expected a finite number"),
    (b"train: {epochs: 1.0e+400}\n", "expected a finite number"),
    (b"name: ../escape\n", "name must be"),
    (b"seed: 99999999999999999999\n", "seed must be"),
])
def test_recipe_files(tmp_path, kit, text, needle):
    (tmp_path / "r.yaml").write_bytes(text)
    out = tmp_path / "out"
    kit.count()
    kit.assert_one_line_error(kit.invoke("run", str(tmp_path / "r.yaml"), "--out", str(out)), needle, out_dir=out)


@pytest.mark.parametrize("item, needle", [
    ("data.image_size=[32,", "--set 'data.image_size=[32,': value is not valid YAML at column"),
    ("train.epochs.foo=3", "'train.epochs' is a value, not a section"),
    ("train.learning_rate=.inf", "--set train.learning_rate: expected a finite number"),
    ("train.learning_rate=-.inf", "--set train.learning_rate: expected a finite number"),
    ("distill.alpha=.nan", "--set distill.alpha: expected a finite number"),
    ("train.nope=1", "--set train.nope: unknown key 'nope'"),
    ("=3", "empty key"),
    ("train.epochs", "KEY=VALUE"),
    ("evaluate.targets=[esp99]", "unknown target 'esp99'"),
])
def test_set_examples(base, kit, item, needle):
    root, recipe = base
    out = root / "out"
    kit.count()
    kit.assert_one_line_error(kit.invoke("run", str(recipe), "--out", str(out), f"--set={item}"), needle,
                              out_dir=out)


def test_scientific_notation_without_dot_is_a_number(base, kit):
    """PyYAML reads 1e-3 as a string; a number field takes it as the number the user meant."""
    root, recipe = base
    o = kit.invoke("run", str(recipe), "--out", str(root / "out"), "--set=train.learning_rate=1e-3", "--check")
    assert o.code == 0 and "ok: recipe 'fuzz'" in o.stdout, o.stderr
    assert math.isclose(float(yaml.safe_load("0.001")), 1e-3)
