"""evaluate.py and the metrics behind it: known answers, JSON shape, files written, comparison table."""
import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_script
from ferkit import checkpoints, data
from ferkit.dataset import EMOTIONS
from ferkit.metrics import classification_report, confusion_matrix


def test_metrics_on_a_known_answer():
    # 10 faces: angry 4 (3 right, 1 called happy), happy 4 (all right), sad 2 (1 right, 1 called angry)
    labels = np.array([0, 0, 0, 0, 3, 3, 3, 3, 4, 4])
    predictions = np.array([0, 0, 0, 3, 3, 3, 3, 3, 4, 0])
    report = classification_report(labels, predictions)
    assert report["n"] == 10 and report["accuracy"] == pytest.approx(0.8)
    angry, happy, sad = (report["per_class"][e] for e in ("angry", "happy", "sad"))
    assert angry == pytest.approx({"precision": 3 / 4, "recall": 3 / 4, "f1": 3 / 4, "support": 4})
    assert happy == pytest.approx({"precision": 4 / 5, "recall": 1.0, "f1": 8 / 9, "support": 4})
    assert sad == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert report["per_class"]["fear"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # averages over the 3 classes the labels hold: absent ones (fear, ...) do not pull them down
    assert report["macro"]["f1"] == pytest.approx((3 / 4 + 8 / 9 + 2 / 3) / 3)
    assert report["macro"]["recall"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    expected = np.zeros((7, 7), int)
    expected[0, 0], expected[0, 3], expected[3, 3], expected[4, 4], expected[4, 0] = 3, 1, 4, 1, 1
    assert report["confusion"] == expected.tolist()
    assert confusion_matrix(labels, labels).trace() == 10


def test_json_report_matches_the_model(tiny_checkpoint, synthetic_cache):
    proc = run_script("evaluate.py", "--checkpoint", tiny_checkpoint, "--data", synthetic_cache, "--json", check=0)
    report = json.loads(proc.stdout)
    assert set(report) >= {"model", "checkpoint", "split", "n", "accuracy", "per_class", "confusion"}
    assert report["model"] == "acnn_alstm" and report["split"] == "PrivateTest" and report["n"] == 28
    assert list(report["per_class"]) == list(EMOTIONS)
    assert all(set(m) == {"precision", "recall", "f1", "support"} for m in report["per_class"].values())
    assert np.array(report["confusion"]).shape == (7, 7) and np.array(report["confusion"]).sum() == 28
    # the same numbers as the classifier's own predictions on the same faces
    images, labels = data.load_cache(synthetic_cache)["PrivateTest"]
    predictions = checkpoints.Classifier(str(tiny_checkpoint)).predict(images).argmax(1)
    assert report["accuracy"] == pytest.approx(float((predictions == labels).mean()))
    assert report["confusion"] == confusion_matrix(labels, predictions).tolist()
    for name in ("eval_PrivateTest.json", "eval_PrivateTest.png"):
        assert (tiny_checkpoint / name).exists()
    with Image.open(tiny_checkpoint / "eval_PrivateTest.png") as picture:  # files.save_figure: 256 colours
        assert picture.mode == "P" and picture.size == (700, 600)


def test_compact_pictures_keeps_the_picture_at_a_third_of_the_bytes(tmp_path):
    """tools/compact_pictures.py: a full-colour plot re-encoded in 256 colours looks the same, and a
    second run leaves the file as it is."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(np.random.default_rng(0).random((7, 7)), cmap="Blues")
    ax.set_title("a confusion matrix, more or less")
    fig.savefig(tmp_path / "full.png", dpi=100)
    plt.close(fig)
    (tmp_path / "notes.txt").write_text("left alone")
    original = (tmp_path / "full.png").read_bytes()
    run_script("tools/compact_pictures.py", tmp_path, check=0)
    compact = (tmp_path / "full.png").read_bytes()
    assert len(compact) < len(original) / 2 and (tmp_path / "notes.txt").read_text() == "left alone"
    with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(compact)) as b:
        assert b.mode == "P" and a.size == b.size
        difference = np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))
    assert difference.mean() < 1.0 and difference.max() < 40
    run_script("tools/compact_pictures.py", tmp_path, check=0)
    assert (tmp_path / "full.png").read_bytes() == compact
    proc = run_script("tools/compact_pictures.py", tmp_path / "none")
    assert proc.returncode == 2 and "not a folder" in proc.stderr


def test_save_figure_writes_a_compact_png_and_closes_the_figure_even_when_it_fails(tmp_path):
    """files.new_figure / save_figure, which every plot goes through: a 256-colour PNG of the
    figure's size, and the figure closed afterwards; a write that fails leaves no file, no
    temporary and no open figure."""
    import matplotlib.pyplot as plt
    from ferkit import files
    fig, ax = files.new_figure(figsize=(4, 3))
    ax.plot([0, 1], [1, 0])
    files.save_figure(fig, tmp_path / "plot.png")
    with Image.open(tmp_path / "plot.png") as picture:
        assert picture.mode == "P" and picture.size == (400, 300)
    assert fig.number not in plt.get_fignums()
    (tmp_path / "taken").mkdir()
    fig, ax = files.new_figure()
    with pytest.raises(IsADirectoryError):
        files.save_figure(fig, tmp_path / "taken")  # a folder in the way: os.replace refuses
    assert fig.number not in plt.get_fignums()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "taken"]
    assert not any((tmp_path / "taken").iterdir())


def test_tta_and_comparison_table(tiny_checkpoint, synthetic_cache):
    proc = run_script("evaluate.py", "--checkpoint", tiny_checkpoint, tiny_checkpoint, "--data", synthetic_cache,
                      "--split", "PublicTest", "--tta", check=0)
    assert "with TTA" in proc.stdout and "TTA acc" in proc.stdout
    table = proc.stdout.split("TTA F1")[1].strip().splitlines()[1:]  # after the header's "checkpoint"
    assert len(table) == 2 and table[0].startswith("acnn_alstm")
    tta = json.loads((tiny_checkpoint / "eval_PublicTest_tta.json").read_text())
    assert tta["n"] == 28 and 0.0 <= tta["accuracy"] <= 1.0


def test_clear_errors(tmp_path, synthetic_cache, tiny_checkpoint):
    proc = run_script("evaluate.py", "--checkpoint", tmp_path, "--data", synthetic_cache)
    assert proc.returncode == 2 and "is not a checkpoint folder written by train.py" in proc.stderr
    assert "Traceback" not in proc.stderr
    train_only = tmp_path / "train_only.npz"
    data.save_cache(train_only, {"Training": data.load_cache(synthetic_cache)["Training"]})
    proc = run_script("evaluate.py", "--checkpoint", tiny_checkpoint, "--data", train_only)
    assert proc.returncode == 2 and "no PrivateTest faces (it has Training)" in proc.stderr
