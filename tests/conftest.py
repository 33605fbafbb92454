"""Shared test helpers: running the scripts, small synthetic FER-2013 files, a tiny trained checkpoint."""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_CSV = os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013.csv.gz")
needs_real_data = pytest.mark.skipif(not os.path.exists(REAL_CSV),
                                     reason=f"the real FER-2013 is not at {REAL_CSV} (it is never committed)")

sys.path.insert(0, ROOT)


def run_script(script, *args, check=None, timeout=600):
    """Run one of the top-level scripts as a user would; returns the CompletedProcess (text stdout/stderr)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def synthetic_faces(labels, seed=0):
    """Learnable fake faces: class k is a bright 12x12 square at one of 7 places, on noise. -> uint8 (N, 48, 48, 1)."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 80, size=(len(labels), 48, 48, 1), dtype=np.uint8)
    for i, k in enumerate(labels):
        y, x = divmod(int(k), 3)
        faces[i, 4 + 14 * y:16 + 14 * y, 4 + 14 * x:16 + 14 * x] = 230
    return faces


def balanced_labels(per_class):
    return np.repeat(np.arange(7), per_class)


def csv_rows(labels, usages=None, seed=0):
    """Rows 'label,pixels[,usage]' of a FER-2013 CSV for the given labels."""
    faces = synthetic_faces(labels, seed)
    rows = []
    for i, (k, face) in enumerate(zip(labels, faces)):
        row = f"{k},{' '.join(map(str, face.ravel()))}"
        rows.append(row + (f",{usages[i]}" if usages is not None else ""))
    return rows


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """A small .npz cache in preprocess.py's format: 84 Training, 28 PublicTest, 28 PrivateTest faces."""
    from ferkit.data import save_cache
    splits = {}
    for seed, (split, per_class) in enumerate((("Training", 12), ("PublicTest", 4), ("PrivateTest", 4))):
        labels = balanced_labels(per_class)
        splits[split] = (synthetic_faces(labels, seed), labels)
    path = tmp_path_factory.mktemp("cache") / "tiny.npz"
    save_cache(path, splits)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, synthetic_cache):
    """An ACNN-ALSTM checkpoint folder trained by train.py for two short epochs on the synthetic cache."""
    folder = tmp_path_factory.mktemp("ckpt") / "acnn_alstm"
    run_script("train.py", "--arch", "acnn_alstm", "--data", synthetic_cache, "--epochs", 2, "--batch-size", 16,
               "--checkpoint-dir", folder, check=0)
    return folder


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory, tiny_checkpoint, synthetic_cache):
    """tiny_checkpoint exported to a float .tflite: what predict and the API tests run, in a fifth of the
    time a checkpoint takes (no TensorFlow); the parity tests compare the two."""
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    run_script("export.py", "--checkpoint", tiny_checkpoint, "--out", path, "--quantize", "none",
               "--data", synthetic_cache, check=0)
    return path
