"""The package outside its checkout, and shipped files that no command writes into."""
import hashlib
import json
import os
import subprocess
import sys

from conftest import ROOT
from ferkit import backends

SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")


def run_from(cwd, script, *args, check=0):
    """A top-level script run by absolute path from another folder, as a user outside the checkout would."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def shipped_digest():
    """sha256 of every file under the shipped models' folder, by path."""
    digests = {}
    for folder, _, files in os.walk(backends.PRETRAINED):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, backends.PRETRAINED)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def git_status():
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def test_installed_package_finds_its_models_from_any_folder(tmp_path):
    """pip install of the checkout carries the default path (model.tflite, config.json, YuNet):
    from another folder, with the checkout not on the path, the API finds the sample's face
    without importing TensorFlow."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), ROOT], check=True, capture_output=True, timeout=300)
    assert (target / "ferkit" / "pretrained" / "acnn_alstm_ferplus" / "model.tflite").is_file()
    assert (target / "ferkit" / "assets" / "face_detection_yunet_2023mar.onnx").is_file()
    assert sorted(p.name for p in (target / "ferkit" / "web").iterdir()) == ["app.js", "index.html", "style.css"]
    code = ("import json, sys; from ferkit import Recognizer; import ferkit; faces = Recognizer().recognize(sys.argv[1]); "
            "print(json.dumps({'file': ferkit.__file__, 'faces': faces, 'tf': 'tensorflow' in sys.modules}))")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", code, SAMPLE], cwd=elsewhere, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(target)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["file"].startswith(str(target)) and not out["tf"]
    assert len(out["faces"]) == 1 and out["faces"][0]["emotion"] == "happy"
    x, y, w, h = out["faces"][0]["box"]
    assert 150 < x < 210 and 40 < y < 100 and 70 < w < 120


def test_scripts_by_absolute_path_leave_the_checkout_as_it_was(tmp_path, synthetic_cache):
    """predict, evaluate and export with their defaults on the shipped models, run from another
    folder: same output as from the checkout, reports in that folder's runs/, nothing shipped changed."""
    status, digest = git_status(), shipped_digest()
    proc = run_from(tmp_path, "predict.py", SAMPLE, "--json")
    assert json.loads(proc.stdout)[0]["faces"][0]["emotion"] == "happy"
    proc = run_from(tmp_path, "evaluate.py", "--model", "dnn", "--data", synthetic_cache, "--tta")
    reports = tmp_path / "runs" / "eval" / "dnn"
    assert sorted(p.name for p in reports.iterdir()) == ["eval_PrivateTest.json", "eval_PrivateTest.png",
                                                         "eval_PrivateTest_tta.json", "eval_PrivateTest_tta.png"]
    with_tta = json.loads((reports / "eval_PrivateTest_tta.json").read_text())
    # A plain run afterwards replaces the plain report only; the TTA report stays as it was.
    run_from(tmp_path, "evaluate.py", "--model", "dnn", "--data", synthetic_cache)
    assert json.loads((reports / "eval_PrivateTest_tta.json").read_text()) == with_tta
    assert "tta" not in json.loads((reports / "eval_PrivateTest.json").read_text())
    run_from(tmp_path, "evaluate.py", "--checkpoint", os.path.join(backends.PRETRAINED, "dnn", "model.tflite"),
             "--data", synthetic_cache)
    assert (reports / "model.eval_PrivateTest.json").is_file()
    run_from(tmp_path, "export.py", "--model", "dnn", "--out", "dnn.tflite", "--data", synthetic_cache)
    assert (tmp_path / "dnn.tflite").stat().st_size > 1e6
    assert shipped_digest() == digest and git_status() == status


def test_training_never_writes_into_a_shipped_model(tmp_path, synthetic_cache):
    digest = shipped_digest()
    proc = run_from(tmp_path, "train.py", "--arch", "dnn", "--data", synthetic_cache, "--overwrite",
                    "--checkpoint-dir", os.path.join(backends.PRETRAINED, "dnn"), check=2)
    assert "is a shipped model, which training never writes into" in proc.stderr
    assert shipped_digest() == digest
