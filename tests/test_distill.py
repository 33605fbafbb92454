"""The recipe's additions: random erasing, mixup, the teachers' soft targets (tools/teacher_probs.py) and train.py --teacher."""
import json

import numpy as np
import pytest

from conftest import balanced_labels, run_script, synthetic_faces


def erased(erase, n=400, seed=1):
    """augment() of n all-ones faces with no warp -> float32 (n, 48, 48)."""
    from ferkit.augment import augment, tf
    with tf.Graph().as_default(), tf.Session() as session:
        faces = tf.ones([n, 48, 48, 1])
        out = augment(faces, max_degrees=0.0, max_scale=0.0, max_shift=0.0, erase=erase,
                      seed=tf.constant([seed, 0], tf.int64))
        return session.run(out)[..., 0]


def test_random_erasing_blanks_one_rectangle_per_face():
    out = erased(1.0)
    assert set(np.unique(out)) == {0.0, 1.0}
    for face in out:
        ys, xs = np.nonzero(face == 0)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert box == len(ys)                          # the blanked pixels fill their bounding box
        assert 0.015 <= len(ys) / face.size <= 0.21    # 2-20% of the face, give or take the pixel grid


def test_random_erasing_probability():
    assert np.all(erased(0.0) == 1.0)
    hit = np.mean([np.any(face == 0) for face in erased(0.5)])
    assert 0.4 < hit < 0.6


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory, synthetic_cache, tiny_checkpoint):
    out = tmp_path_factory.mktemp("teacher") / "teacher.npz"
    proc = run_script("tools/teacher_probs.py", tiny_checkpoint, "--data", synthetic_cache, "--out", out, check=0)
    assert "ensemble of 1: Training" in proc.stdout and "PublicTest" in proc.stdout
    return out


def test_teacher_probabilities_are_the_models_tta_average(teacher_file, synthetic_cache, tiny_checkpoint):
    from ferkit import backends, data
    images, labels = data.load(synthetic_cache, splits=("Training",)).splits["Training"]
    with np.load(teacher_file) as f:
        probabilities, fingerprint, tta = f["probabilities"], str(f["fingerprint"]), bool(f["tta"])
    assert probabilities.shape == (len(labels), 7) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    model = backends.load(str(tiny_checkpoint))
    np.testing.assert_allclose(probabilities, model.predict(images, tta=True), atol=1e-5)
    assert tta and fingerprint == data.fingerprint(images, labels)
    assert not list(teacher_file.parent.glob(".ferkit-*"))


def test_training_with_a_teacher_and_erasing(tmp_path, teacher_file, synthetic_cache):
    folder = tmp_path / "student"
    run_script("train.py", "--arch", "dnn", "--epochs", 2, "--max-steps", 6, "--batch-size", 16, "--data", synthetic_cache,
               "--teacher", teacher_file, "--distill", 0.7, "--erase", 0.5, "--out", folder, check=0)
    settings = json.loads((folder / "config.json").read_text())["settings"]
    assert (settings["teacher"], settings["distill"], settings["erase"]) == (str(teacher_file), 0.7, 0.5)
    assert list((folder / "best").glob("*.index"))
    # Resuming (5 steps per epoch: it stopped in epoch 2) with another teacher weight is refused, like any
    # other change of schedule.
    proc = run_script("train.py", "--arch", "dnn", "--epochs", 2, "--batch-size", 16, "--data", synthetic_cache,
                      "--teacher", teacher_file, "--distill", 0.5, "--erase", 0.5, "--out", folder)
    assert proc.returncode == 2 and "other settings" in proc.stderr


def test_teacher_of_other_data_is_refused_before_anything_is_written(tmp_path, teacher_file):
    from ferkit.data import save_cache
    labels = balanced_labels(12)
    other = tmp_path / "other.npz"
    save_cache(other, {"Training": (synthetic_faces(labels, seed=9), labels),
                       "PublicTest": (synthetic_faces(balanced_labels(4), seed=8), balanced_labels(4))})
    folder = tmp_path / "student"
    proc = run_script("train.py", "--arch", "dnn", "--data", other, "--teacher", teacher_file, "--out", folder)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "made from other Training faces" in proc.stderr and not folder.exists()
    junk = tmp_path / "junk.npz"
    junk.write_text("not a teacher file")
    proc = run_script("train.py", "--arch", "dnn", "--data", other, "--teacher", junk, "--out", folder)
    assert proc.returncode == 2 and "not a file written by tools/teacher_probs.py" in proc.stderr
    assert not folder.exists()


@pytest.mark.parametrize("args, message", [
    (("--erase", "1.5"), "--erase must be a probability"),
    (("--teacher", "t.npz", "--distill", "0"), "--distill must be in (0, 1]"),
    (("--teacher", "t.npz", "--labels", "ferplus"), "cannot be used with --labels ferplus"),
    (("--mixup", "-0.2"), "--mixup must be in [0, 10] (0 is off), got -0.2"),
    (("--mixup", "nan"), "--mixup must be in [0, 10]"),
])
def test_bad_recipe_options(args, message):
    proc = run_script("train.py", "--arch", "dnn", *args)
    assert proc.returncode == 2 and message in proc.stderr


def test_mixup_blends_each_face_with_one_other_and_its_targets_alike():
    from ferkit.training import mixup
    rng = np.random.RandomState(3)
    images = rng.uniform(-1, 1, (7, 48, 48, 1)).astype(np.float32)
    targets = np.eye(7, dtype=np.float32)  # row r is class r: the targets show which faces were blended
    mixed, mixed_targets = mixup(images, targets, 0.4, np.random.RandomState(5))
    assert mixed.shape == images.shape and mixed.dtype == np.float32 and mixed_targets.shape == (7, 7)
    assert np.allclose(mixed_targets.sum(1), 1.0)
    for r in range(7):
        weight = mixed_targets[r, r]
        assert 0.5 <= weight <= 1.0  # mostly its own face: its label still names the dominant one
        others = [c for c in range(7) if c != r and mixed_targets[r, c] > 0]
        if weight < 1.0:  # blended with exactly one other face, at the weight its target says
            assert len(others) == 1
            assert np.allclose(mixed[r], weight * images[r] + (1 - weight) * images[others[0]], atol=1e-6)
        else:
            assert not others and np.allclose(mixed[r], images[r])
    assert np.mean(np.diag(mixed_targets) < 1.0) > 0.5  # it did blend
    # The same generator state gives the same blend: a resumed epoch repeats its batches exactly.
    again, again_targets = mixup(images, targets, 0.4, np.random.RandomState(5))
    assert np.array_equal(again, mixed) and np.array_equal(again_targets, mixed_targets)


def test_training_with_mixup(tmp_path, synthetic_cache):
    folder = tmp_path / "mixup"
    train = ("train.py", "--arch", "dnn", "--epochs", 2, "--batch-size", 16, "--data", synthetic_cache,
             "--out", folder)
    run_script(*train, "--mixup", 0.2, "--max-steps", 6, check=0)
    assert json.loads((folder / "config.json").read_text())["settings"]["mixup"] == 0.2
    assert list((folder / "best").glob("*.index"))
    proc = run_script(*train)  # without mixup: another run
    assert proc.returncode == 2 and "other settings (mixup: 0.2)" in proc.stderr
    proc = run_script(*train, "--mixup", 0.2, check=0)
    assert "at step 6 (epoch 2)" in proc.stdout and "finished" in proc.stdout
