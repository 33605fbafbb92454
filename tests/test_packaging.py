"""The package outside its checkout, and shipped files that no command writes into."""
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT
from ferkit import backends, cli, commands

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


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The checkout pip-installed (not editable) into a folder of its own: the package and its command."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), ROOT], check=True, capture_output=True, timeout=300)
    return target


def test_installed_package_finds_its_models_from_any_folder(tmp_path, installed):
    """pip install of the checkout carries the default path (model.tflite, config.json, YuNet):
    from another folder, with the checkout not on the path, the API finds the sample's face
    without importing TensorFlow."""
    target = installed
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
                    "--out", os.path.join(backends.PRETRAINED, "dnn"), check=2)
    assert "is a shipped model, which training never writes into" in proc.stderr
    assert shipped_digest() == digest


def test_the_ferkit_command_runs_every_mode_from_any_folder(tmp_path, installed, synthetic_cache):
    """The installed `ferkit` command, from a folder with no checkout in sight: the same output as the
    scripts (predict's --json byte for byte), training into checkpoints/ there, export, and serve."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    command = [str(installed / "bin" / "ferkit")]

    def ferkit(*args, check=0):
        proc = subprocess.run(command + list(map(str, args)), cwd=tmp_path, capture_output=True, text=True, env=env,
                              timeout=600)
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    assert ferkit("--version").stdout.startswith("ferkit ")
    modes = ferkit("--help").stdout
    assert all(f"  {mode} " in modes for mode in commands.COMMANDS)
    assert json.loads(ferkit("predict", SAMPLE, "--json").stdout)  # and then, byte for byte, as the script prints it:
    assert ferkit("predict", SAMPLE, "--json").stdout == run_from(tmp_path, "predict.py", SAMPLE, "--json").stdout
    same = [proc.stdout.replace(str(installed), "SITE").replace(ROOT, "SITE")
            for proc in (ferkit("evaluate", "--model", "dnn", "--data", synthetic_cache),
                         run_from(tmp_path, "evaluate.py", "--model", "dnn", "--data", synthetic_cache))]
    assert same[0] == same[1] and "accuracy" in same[0]
    ferkit("train", "--arch", "dnn", "--data", synthetic_cache, "--max-steps", 20, "--epochs", 2, "--batch-size", 16)
    assert (tmp_path / "checkpoints" / "dnn" / "best" / "checkpoint").is_file()
    ferkit("export", "--checkpoint", "checkpoints/dnn", "--out", "dnn.tflite", "--data", synthetic_cache)
    assert (tmp_path / "dnn.tflite").stat().st_size > 1e6
    server = subprocess.Popen(command + ["serve", "--port", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split(" on ")[1].split("/ ")[0]
        for _ in range(120):  # bounded: the model loads in a second or two
            try:
                with urllib.request.urlopen(url + "/v1/health", timeout=5) as answer:
                    if json.load(answer)["status"] == "ready":
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("the service never said it was ready")
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0


def test_a_mode_without_its_extra_names_the_pip_line(monkeypatch, capsys):
    """Checked before the mode is imported: one line, exit 2, no traceback (a module no machine has
    stands in for the missing extra's)."""
    monkeypatch.setitem(cli.EXTRAS, "train", ("tensorflow", "ferkit_test_absent_module"))
    with pytest.raises(SystemExit) as exit:
        commands.main(["train", "--arch", "dnn"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "ferkit[train]"' in err and "ferkit_test_absent_module" in err
    # ... and a module of an extra found missing later, at its import, is the same one line.
    monkeypatch.setitem(cli.EXTRAS, "video", ("ferkit_test_absent_video",))
    with pytest.raises(SystemExit) as exit:
        cli.run(lambda: __import__("ferkit_test_absent_video"))
    assert exit.value.code == 2 and 'pip install "ferkit[video]"' in capsys.readouterr().err
