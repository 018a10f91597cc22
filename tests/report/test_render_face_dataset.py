"""The report's dataset lines of a face run say what was left out of training as LFW overlap, per set."""

from __future__ import annotations


def test_report_lists_the_lfw_overlap_left_out_per_set():
    from atalaia.report.render import _face_dataset_items

    train = {"chips": 10, "identities": 2, "unlabelled": 0, "per_set": [
        {"set": "/d/celeba_more", "lfw_overlap_file": "/d/celeba_more/lfw_overlap.csv", "excluded_identities": 22,
         "excluded_chips": 417}, {"set": "/d/more_ids_gray", "lfw_overlap_file": None}]}
    lines = [x for x in _face_dataset_items(train, {}) if "LFW overlap" in x]
    assert lines == ["left out of /d/celeba_more as LFW overlap: 22 identities (417 chips), listed in "
                     "/d/celeba_more/lfw_overlap.csv"]
