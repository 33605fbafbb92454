"""The photo path end to end on real faces: FER-2013 PublicTest faces put into photos, found, aligned, classified."""
import os

import pytest

from conftest import REAL_CSV, ROOT, needs_real_data

FERPLUS_CSV = os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013new.csv")


@needs_real_data
@pytest.mark.skipif(not os.path.exists(FERPLUS_CSV), reason=f"FER+'s votes are not at {FERPLUS_CSV}")
def test_round_trip_small():
    """A small version of benchmarks/bench_roundtrip.py with the model predict.py uses by default, scored
    on the labels it was trained on (FER+'s majority): nearly every face is found, and classified nearly as
    well as the face itself.  On PrivateTest faces, which no shipped model was trained on (the default is
    refit on Training + PublicTest); this checks the photo path and chooses nothing.  (The benchmark runs
    on PublicTest, where framing choices are made; 300 faces only bound its figures loosely.)"""
    from ferkit import data, ferplus
    from ferkit.recognizer import Recognizer
    from ferkit.roundtrip import round_trip
    faces, _ = data.load(REAL_CSV, splits=("PrivateTest",)).splits["PrivateTest"]
    labels, clear = ferplus.majority(ferplus.read_votes(FERPLUS_CSV)["PrivateTest"])
    recognizer = Recognizer()
    assert recognizer.classifier.backend == "tflite"  # the shipped model.tflite, no TensorFlow
    result = round_trip(recognizer, faces[clear][:300], labels[clear][:300], seed=0, progress=False)
    assert result["detection_rate"] >= 0.96
    assert result["photo_accuracy_found"] >= result["direct_accuracy_found"] - 0.05
    assert result["photo_accuracy_found"] > result["squashed_accuracy_found"] - 0.02
    assert result["photo_accuracy_found"] >= 0.78  # FER+-trained: about 0.86 on the full run
