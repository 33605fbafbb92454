"""Guard: the shipped checkpoints still score what the README says on FER-2013's PrivateTest."""
import os

import numpy as np
import pytest

from conftest import REAL_CSV, ROOT, needs_real_data
from ferkit import checkpoints, data

# The floors of the README's results table (issue 5): a change that degrades a shipped model fails here.
FLOORS = {"acnn_alstm": 0.68, "acnn_alstm_photo": 0.68, "dnn": 0.62}


@pytest.fixture(scope="module")
def private_test():
    return data.load(REAL_CSV, splits=("PrivateTest",)).splits["PrivateTest"]


@needs_real_data
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_checkpoint_accuracy(name, private_test):
    folder = os.path.join(ROOT, "checkpoints", name)
    assert os.path.exists(os.path.join(folder, "config.json")), f"{folder} is not shipped"
    images, labels = private_test
    assert len(labels) == 3589
    accuracy = float((checkpoints.Classifier(folder).predict(images).argmax(1) == labels).mean())
    assert accuracy >= FLOORS[name], f"{name}: PrivateTest accuracy {accuracy:.4f} < {FLOORS[name]}"
