"""FER+ votes: reading fer2013new.csv, majority labels, preprocess --ferplus and evaluate --labels ferplus."""
import json
import os

import numpy as np
import pytest

from conftest import ROOT, csv_rows, needs_real_data, run_script
from ferkit import data, ferplus

HEADER = "Usage,Image name," + ",".join(ferplus.VOTE_COLUMNS)
# Votes over neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
CLEAR_HAPPY = [1, 8, 1, 0, 0, 0, 0, 0, 0, 0]
CLEAR_ANGRY = [0, 0, 0, 2, 7, 1, 0, 0, 0, 0]
TIE = [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]
CONTEMPT = [2, 0, 0, 0, 0, 0, 0, 6, 2, 0]
DROPPED = [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]


def test_majority_labels_in_our_order():
    labels, clear = ferplus.majority(np.array([CLEAR_HAPPY, CLEAR_ANGRY, TIE, CONTEMPT, DROPPED, [0] * 10]))
    assert clear.tolist() == [True, True, False, False, False, False]
    assert labels[:2].tolist() == [3, 0]  # happy, angry in EMOTIONS order


def write_pair(folder, n_private_votes=4):
    """A FER-2013 CSV (3 Training, 2 PublicTest, 4 PrivateTest rows) and a FER+ file lining up with it."""
    usages = ["Training"] * 3 + ["PublicTest"] * 2 + ["PrivateTest"] * 4
    labels = [3, 0, 6, 3, 0, 3, 0, 6, 3]
    (folder / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(csv_rows(labels, usages)) + "\n")
    votes = [CLEAR_HAPPY, CLEAR_ANGRY, TIE, CLEAR_HAPPY, CLEAR_ANGRY,
             CLEAR_HAPPY, CLEAR_HAPPY, CONTEMPT, DROPPED][:5 + n_private_votes]
    lines = [f"{u},fer{i:07d}.png,{','.join(map(str, v))}" for i, (u, v) in enumerate(zip(usages, votes))]
    (folder / "fer2013new.csv").write_text(HEADER + "\n" + "\n".join(lines) + "\n")


def test_preprocess_stores_votes_and_evaluate_scores_the_clear_faces(tmp_path, tiny_checkpoint):
    write_pair(tmp_path)
    proc = run_script("preprocess.py", "--input", tmp_path / "fer2013.csv", "--ferplus", tmp_path / "fer2013new.csv",
                      "--out", tmp_path / "c.npz", check=0)
    assert "FER+ PrivateTest: 2 of 4 faces have a clear majority label; it agrees with FER-2013's on 50.0%" in proc.stdout
    np.testing.assert_array_equal(data.load_ferplus_votes(tmp_path / "c.npz", "PrivateTest")[1], CLEAR_HAPPY)
    folder = tmp_path / "ck"
    import shutil
    shutil.copytree(tiny_checkpoint, folder)
    report = json.loads(run_script("evaluate.py", "--checkpoint", folder, "--data", tmp_path / "c.npz",
                                   "--labels", "ferplus", "--json", check=0).stdout)
    assert report["n"] == 2 and report["data"]["left_out"] == 2 and report["data"]["labels"] == "ferplus"
    saved = json.loads((folder / "eval_PrivateTest_ferplus.json").read_text())  # beside, not over, FER-2013's report
    assert saved["data"]["labels"] == "ferplus" and saved["n"] == 2


def test_votes_that_do_not_line_up_are_refused(tmp_path):
    write_pair(tmp_path, n_private_votes=3)
    proc = run_script("preprocess.py", "--input", tmp_path / "fer2013.csv", "--ferplus", tmp_path / "fer2013new.csv",
                      "--out", tmp_path / "c.npz")
    assert proc.returncode == 2 and "3 PrivateTest rows, but" in proc.stderr and not (tmp_path / "c.npz").exists()
    (tmp_path / "fer2013new.csv").write_text("Usage,name,a,b\n")
    proc = run_script("preprocess.py", "--input", tmp_path / "fer2013.csv", "--ferplus", tmp_path / "fer2013new.csv",
                      "--out", tmp_path / "c.npz")
    assert proc.returncode == 2 and "not FER+'s header" in proc.stderr


def test_ferplus_scores_need_a_cache_with_votes(tmp_path, tiny_checkpoint, synthetic_cache):
    proc = run_script("evaluate.py", "--checkpoint", tiny_checkpoint, "--data", synthetic_cache, "--labels", "ferplus")
    assert proc.returncode == 2 and "holds no FER+ votes" in proc.stderr and "Traceback" not in proc.stderr


@needs_real_data
@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013new.csv")),
                    reason="FER+'s fer2013new.csv is not beside the checkout")
def test_real_ferplus_lines_up_with_fer2013():
    from conftest import REAL_CSV
    votes = ferplus.read_votes(os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013new.csv"))
    splits = data.load(REAL_CSV).splits
    for split, (_, labels) in splits.items():
        assert len(votes[split]) == len(labels)
    fer_labels, clear = ferplus.majority(votes["PrivateTest"])
    agreement = (fer_labels[clear] == splits["PrivateTest"][1][clear]).mean()
    assert clear.sum() == 3350 and 0.6 < agreement < 0.7  # FER-2013's labels are noisy


def test_train_on_vote_shares(tmp_path, synthetic_cache):
    """train.py --labels ferplus learns from soft targets and chooses checkpoints on FER+ majority labels."""
    splits = data.load_cache(synthetic_cache)
    rng = np.random.default_rng(0)
    votes = {}
    for split, (_, labels) in splits.items():
        v = rng.integers(0, 2, (len(labels), 10)).astype(np.uint8)
        v[np.arange(len(labels)), np.array(ferplus.EMOTION_COLUMNS)[labels]] = 7  # the FER-2013 label wins
        votes[split] = v
    votes["PublicTest"][0] = TIE  # no clear majority: left out of checkpoint choice
    cache = tmp_path / "votes.npz"
    data.save_cache(cache, splits, ferplus=votes)
    folder = tmp_path / "ck"
    proc = run_script("train.py", "--arch", "dnn", "--labels", "ferplus", "--data", cache, "--epochs", 2,
                      "--batch-size", 16, "--out", folder, check=0)
    assert "84 of 84 Training faces with emotion votes; 27 of 28 PublicTest faces with a clear majority" in proc.stdout
    assert json.loads((folder / "config.json").read_text())["settings"]["labels"] == "ferplus"
    report = json.loads(run_script("evaluate.py", "--checkpoint", folder, "--data", cache, "--labels", "ferplus",
                                   "--json", check=0).stdout)
    assert report["n"] == 28 and 0 <= report["accuracy"] <= 1
    proc = run_script("train.py", "--arch", "dnn", "--data", cache, "--epochs", 2, "--batch-size", 16,
                      "--out", folder)
    assert proc.returncode == 2 and "holds a finished model" in proc.stderr
    # --refit: PublicTest's faces join Training with their own votes (84 + 28 faces, 7 steps of 16)
    proc = run_script("train.py", "--arch", "dnn", "--labels", "ferplus", "--refit", "--data", cache, "--epochs", 1,
                      "--batch-size", 16, "--out", tmp_path / "refit", check=0)
    assert "112 of 112 Training + PublicTest faces with emotion votes; 27 of 28 PublicTest" in proc.stdout
    assert "Training 112 faces, PublicTest 27; 7 steps/epoch" in proc.stdout


def test_train_on_both_label_sets(tmp_path, synthetic_cache):
    """--labels both: targets are (1 - W) x FER+'s vote shares + W x the FER-2013 label; the weight is
    recorded, a resume with another refused, checkpoints chosen on FER+'s PublicTest majority."""
    from ferkit.training import ferplus_data
    splits = data.load_cache(synthetic_cache)
    rng = np.random.default_rng(1)
    votes = {split: rng.integers(0, 4, (len(labels), 10)).astype(np.uint8) for split, (_, labels) in splits.items()}
    votes["Training"][0, :7] = 0  # no emotion votes: left out
    cache = tmp_path / "votes.npz"
    data.save_cache(cache, splits, ferplus=votes)
    images, labels = splits["Training"]
    _, shown, targets, _, _ = ferplus_data(str(cache), images, labels, splits["PublicTest"][0], fer2013_weight=0.3)
    emotion_votes = votes["Training"][1:, list(ferplus.EMOTION_COLUMNS)].astype(np.float64)
    expected = 0.7 * emotion_votes / emotion_votes.sum(1, keepdims=True) + 0.3 * np.eye(7)[labels[1:]]
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
    assert targets.shape == (83, 7) and (shown == targets.argmax(1)).all()
    folder = tmp_path / "both"
    small = ("train.py", "--arch", "dnn", "--data", cache, "--epochs", 2, "--batch-size", 16, "--out", folder)
    run_script(*small, "--labels", "both", "--fer2013-weight", 0.25, "--max-steps", 5, check=0)
    settings = json.loads((folder / "config.json").read_text())["settings"]
    assert settings["labels"] == "both" and settings["fer2013_weight"] == 0.25
    proc = run_script(*small, "--labels", "both")
    assert proc.returncode == 2 and "trained with other settings (fer2013_weight: 0.25)" in proc.stderr
    proc = run_script(*small, "--labels", "both", "--fer2013-weight", 1)
    assert proc.returncode == 2 and "--fer2013-weight must be in (0, 1), got 1.0" in proc.stderr


@needs_real_data
@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013new.csv")),
                    reason="FER+'s fer2013new.csv is not beside the checkout")
def test_votes_shifted_by_a_row_are_refused(tmp_path):
    """The votes moved down one row (the Usage column kept): same row counts, every face another's votes."""
    from conftest import REAL_CSV
    lines = open(os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013new.csv")).read().splitlines()
    head, rows = lines[0], [l.split(",") for l in lines[1:]]
    shifted = [rows[0]] + [r[:2] + p[2:] for r, p in zip(rows[1:], rows[:-1])]
    (tmp_path / "shifted.csv").write_text("\n".join([head] + [",".join(r) for r in shifted]) + "\n")
    proc = run_script("preprocess.py", "--input", REAL_CSV, "--ferplus", tmp_path / "shifted.csv", "--out", tmp_path / "c.npz")
    assert proc.returncode == 2 and "votes do not line up" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "c.npz").exists()


def test_label_ceiling_scores_the_targets_own_answers_on_both_label_sets(tmp_path):
    # Votes over neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF, and the
    # FER-2013 label (EMOTIONS order) of each face.  W is --fer2013-weight; the targets' answer:
    votes = np.array([[4, 0, 0, 0, 6, 0, 0, 0, 0, 0],   # angry, labelled angry: right on both, at any W
                      [0, 5, 5, 0, 0, 0, 0, 0, 0, 0],   # happy/surprise tie (no FER+ majority), labelled
                                                        # surprise: happy (first in our order) at W 0, surprise from 0.1
                      [7, 0, 0, 3, 0, 0, 0, 0, 0, 0],   # neutral, labelled sad: neutral up to W 0.2, sad from 0.3
                      DROPPED], np.uint8)               # no emotion votes: on neither
    labels = np.array([0, 5, 4, 3])
    faces = np.zeros((4, 48, 48, 1), np.uint8)
    cache = tmp_path / "votes.npz"
    data.save_cache(cache, {s: (faces, labels) for s in data.SPLITS}, ferplus={s: votes for s in data.SPLITS})
    rows = run_script("tools/label_ceiling.py", "--data", cache, check=0).stdout.splitlines()[1:]
    table = {row.split()[0]: [float(v.strip(",")) for v in row.split()[1:]] for row in rows}
    # per W: PublicTest FER+, FER-2013, PrivateTest FER+, FER-2013 (FER+ over the 2 clear faces,
    # FER-2013 over the 3 voted ones)
    assert table["0.0"] == [1.0, 0.3333, 1.0, 0.3333]
    assert table["0.1"] == table["0.2"] == [1.0, 0.6667, 1.0, 0.6667]
    assert table["0.3"] == [0.5, 1.0, 0.5, 1.0]
