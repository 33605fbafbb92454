"""Guard: the shipped models still score what the README says on FER-2013's PrivateTest (and FER+'s)."""
import os

import pytest

from conftest import REAL_CSV, ROOT, needs_real_data
from ferkit import backends, data, exported, ferplus

# The floors of the README's results table: a change that degrades a shipped model fails here.
FLOORS = {"acnn_alstm": 0.68, "acnn_alstm_photo": 0.68, "dnn": 0.62, "cnn_lstm": 0.68, "cnn_alstm": 0.68}
# Models trained on FER+'s votes, scored against FER+'s majority labels (PrivateTest faces with a clear one).
FERPLUS_FLOORS = {"acnn_alstm_ferplus": 0.82}
# Every shipped model has its exported model.tflite (what predict.py runs for --model NAME).
WITH_TFLITE = ("acnn_alstm", "acnn_alstm_ferplus", "acnn_alstm_photo", "cnn_alstm", "cnn_lstm", "dnn")


def test_every_shipped_model_has_its_export_and_all_fit_in_40_mb():
    import subprocess
    assert backends.shipped_models() == sorted(WITH_TFLITE)
    for name in WITH_TFLITE:
        assert exported.is_export(os.path.join(backends.PRETRAINED, name, backends.FAST_FILE)), name
    tracked = subprocess.run(["git", "ls-files", "-z", backends.PRETRAINED], cwd=ROOT, capture_output=True,
                             check=True).stdout.split(b"\0")
    size = sum(os.path.getsize(os.path.join(ROOT, p.decode())) for p in tracked if p)
    assert size < 40e6, f"the shipped models take {size / 1e6:.1f} MB"
FERPLUS_CSV = os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013new.csv")
needs_ferplus = pytest.mark.skipif(not os.path.exists(FERPLUS_CSV), reason=f"FER+'s votes are not at {FERPLUS_CSV}")


@pytest.fixture(scope="module")
def private_test():
    return data.load(REAL_CSV, splits=("PrivateTest",)).splits["PrivateTest"]


def accuracy(path, images, labels):
    return float((backends.load(path).predict(images).argmax(1) == labels).mean())


@needs_real_data
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_checkpoint_accuracy(name, private_test):
    folder = os.path.join(backends.PRETRAINED, name)
    assert os.path.exists(os.path.join(folder, "config.json")), f"{folder} is not shipped"
    images, labels = private_test
    assert len(labels) == 3589
    got = accuracy(folder, images, labels)
    assert got >= FLOORS[name], f"{name}: PrivateTest accuracy {got:.4f} < {FLOORS[name]}"


@needs_real_data
@pytest.mark.parametrize("name", WITH_TFLITE)
def test_shipped_tflite_keeps_the_checkpoints_accuracy(name, private_test):
    """What predict.py runs for --model NAME: within 0.1 point of the checkpoint (tools/ship_exports.py's rule)."""
    folder = os.path.join(backends.PRETRAINED, name)
    fast = os.path.join(folder, backends.FAST_FILE)
    assert os.path.isfile(fast), f"{fast} is not shipped"
    images, labels = private_test
    assert accuracy(fast, images, labels) >= accuracy(folder, images, labels) - 0.001


@needs_real_data
@needs_ferplus
@pytest.mark.parametrize("name", sorted(FERPLUS_FLOORS))
def test_shipped_ferplus_model_on_ferplus_labels(name, private_test):
    images, _ = private_test
    labels, clear = ferplus.majority(ferplus.read_votes(FERPLUS_CSV)["PrivateTest"])
    assert clear.sum() == 3350
    got = accuracy(os.path.join(backends.PRETRAINED, name), images[clear], labels[clear])
    assert got >= FERPLUS_FLOORS[name], f"{name}: FER+ PrivateTest accuracy {got:.4f} < {FERPLUS_FLOORS[name]}"
