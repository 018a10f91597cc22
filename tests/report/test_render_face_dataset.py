"""Face runs in the report: the dataset lines say what was left out of training as LFW overlap, per set; the
"Size tier" section says where the tier fits and checks the final int8 model against its limits."""

from __future__ import annotations


def test_report_lists_the_lfw_overlap_left_out_per_set():
    from atalaia.report.render import _face_dataset_items

    train = {"chips": 10, "identities": 2, "unlabelled": 0, "per_set": [
        {"set": "/d/celeba_more", "lfw_overlap_file": "/d/celeba_more/lfw_overlap.csv", "excluded_identities": 22,
         "excluded_chips": 417}, {"set": "/d/more_ids_gray", "lfw_overlap_file": None}]}
    lines = [x for x in _face_dataset_items(train, {}) if "LFW overlap" in x]
    assert lines == ["left out of /d/celeba_more as LFW overlap: 22 identities (417 chips), listed in "
                     "/d/celeba_more/lfw_overlap.csv"]


def _tier_report(arena: int) -> dict:
    return {"recipe": {"face": {"tier": "S", "mirror_tta": True}},
            "stages": [{"stage": "student", "dtype": "float32", "flash_bytes": 800_000, "arena_bytes": None,
                        "macs": 10_000_000},
                       {"stage": "int8_tflm", "dtype": "int8", "flash_bytes": 255_600, "arena_bytes": arena,
                        "macs": 10_454_016}],
            "verification": {"models": {"int8_tflm": {"open_set_at_open_far_1e-2": {"dir": 0.8, "far": 0.011}}}}}


def test_report_states_the_tier_where_it_fits_and_its_door_figure():
    from atalaia.report.render import _tier_blocks

    blocks = _tier_blocks(_tier_report(92_528))
    assert blocks[0] == ("h2", "Size tier S")
    assert "every MCU target" in blocks[1][1]
    table = blocks[2]
    assert [r[0].split(" ")[0] for r in table[2]] == ["int8", "TFLM", "MACs"]
    assert [r[3] for r in table[2]] == ["yes", "yes", "yes"]
    assert "20,908,032" in table[2][2][1]  # mirror TTA: two inferences per face
    assert "80.00 % of residents" in blocks[3][1]


def test_report_tier_check_fails_an_arena_over_the_limit_and_skips_untiered_runs():
    from atalaia.report.render import _tier_blocks

    over = _tier_blocks(_tier_report(170_000))
    assert [r[3] for r in over[2][2]] == ["yes", "NO", "yes"]
    untiered = _tier_report(92_528)
    untiered["recipe"]["face"]["tier"] = ""
    assert _tier_blocks(untiered) == []
