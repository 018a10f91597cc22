"""C array export round-trips to the exact bytes."""

from __future__ import annotations

import re

import pytest

from atalaia.deploy.carray import to_c_array, write_c_array


def _parse(source: str, name: str) -> bytes:
    body = re.search(rf"{name}\[\] = \{{(.*?)\}};", source, re.S).group(1)
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_round_trip(tiny_int8_blob):
    h, cc = to_c_array(tiny_int8_blob, "face_model", stem="face_model")
    assert _parse(cc, "face_model") == tiny_int8_blob
    assert f"face_model_len = {len(tiny_int8_blob)};" in cc
    assert "alignas(16) const unsigned char face_model[]" in cc
    assert '#include "face_model.h"' in cc
    assert "#ifndef ATALAIA_FACE_MODEL_H_" in h and "extern const unsigned char face_model[];" in h


def test_odd_length_and_bad_name():
    blob = bytes(range(25))
    assert _parse(to_c_array(blob)[1], "g_model") == blob
    with pytest.raises(ValueError):
        to_c_array(blob, "1bad-name")


def test_write(tmp_path):
    h, cc = write_c_array(b"\x00\xff\x10", tmp_path / "out", "g_model")
    assert h.name == "model_data.h" and cc.name == "model_data.cc"
    assert '#include "model_data.h"' in cc.read_text()
    assert _parse(cc.read_text(), "g_model") == b"\x00\xff\x10"
    assert not list((tmp_path / "out").glob("*.tmp"))
