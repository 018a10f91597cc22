"""Data building blocks: identity-folder datasets and splits (`dataset`), LFW pairs (`lfw`), dlib face alignment
(`align`). Each module lists its own public names; these are the modules."""

__all__ = ["align", "dataset", "lfw"]
