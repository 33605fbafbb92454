"""The photo path end to end on real faces: FER-2013 PublicTest faces put into photos, found, aligned, classified."""
import os
import sys

import pytest

from conftest import REAL_CSV, ROOT, needs_real_data

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


@needs_real_data
def test_round_trip_small():
    """A small version of benchmarks/bench_roundtrip.py with the model predict.py uses by default:
    nearly every face is found, and classified nearly as well as the face itself.  (The full run,
    3,589 faces, gives the README's figures; 200 faces only bound them loosely.)"""
    from bench_roundtrip import round_trip
    from ferkit import data
    from ferkit.recognizer import Recognizer
    faces, labels = data.load(REAL_CSV, splits=("PublicTest",)).splits["PublicTest"]
    result = round_trip(Recognizer(), faces[:200], labels[:200], seed=0, progress=False)
    assert result["detection_rate"] >= 0.96
    assert result["photo_accuracy_found"] >= result["direct_accuracy_found"] - 0.05
    assert result["photo_accuracy_found"] > result["squashed_accuracy_found"] - 0.02
