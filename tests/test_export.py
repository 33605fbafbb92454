"""export.py: SavedModel and TFLite exports of a model trained here, run through evaluate, predict and the API."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, balanced_labels, run_script, synthetic_faces
from ferkit import backends, checkpoints

SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")
FORMATS = {  # name -> export.py arguments after --out
    "saved_model": ("--format", "saved_model"),
    "float.tflite": ("--quantize", "none"),
    "float16.tflite": ("--quantize", "float16"),
    "dynamic.tflite": ("--quantize", "dynamic"),
    "int8.tflite": ("--quantize", "int8"),
}

pytestmark = pytest.mark.xdist_group("exports")  # these tests share one worker, so the exports are built once


# Session-scoped: a module-scoped fixture is torn down whenever the worker runs another module's test
# between two of these, and was built again (25 s each time).
@pytest.fixture(scope="session")
def exports(tmp_path_factory, tiny_checkpoint, synthetic_cache):
    """Every format exported from the ACNN-ALSTM trained by the tests: {name: (path, export.py stdout)}."""
    folder = tmp_path_factory.mktemp("exports")
    made = {}
    for name, arguments in FORMATS.items():
        out = folder / name
        proc = run_script("export.py", "--checkpoint", tiny_checkpoint, "--out", out, "--data", synthetic_cache,
                          *arguments, check=0)
        made[name] = (out, proc.stdout)
    return made


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(balanced_labels(20), seed=7)  # 140 faces the model has not seen


def test_export_prints_size_and_both_accuracies(exports):
    for name, (out, stdout) in exports.items():
        assert out.exists()
        assert f"wrote {out}" in stdout and " MB" in stdout
        assert "PublicTest (28 faces): checkpoint " in stdout and "exported " in stdout
    assert os.path.getsize(exports["dynamic.tflite"][0]) < 0.5 * os.path.getsize(exports["float.tflite"][0])
    assert os.path.getsize(exports["float16.tflite"][0]) < 0.6 * os.path.getsize(exports["float.tflite"][0])


def test_float_exports_match_the_checkpoint(exports, tiny_checkpoint, faces):
    expected = checkpoints.Classifier(str(tiny_checkpoint)).predict(faces)
    for name in ("saved_model", "float.tflite"):
        model = backends.load(str(exports[name][0]))
        assert model.name == "acnn_alstm" and model.backend == ("tflite" if name.endswith("tflite") else "saved_model")
        got = model.predict(faces, batch_size=32)  # uneven last batch: the interpreter is re-planned
        assert got.shape == (len(faces), 7)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        probs, extra = model.predict(faces[:3], extra=("local_attention",))
        np.testing.assert_allclose(extra["local_attention"].sum(1), 1.0, atol=1e-4)


def test_quantized_exports_keep_the_top_1(exports, tiny_checkpoint, faces):
    expected = checkpoints.Classifier(str(tiny_checkpoint)).predict(faces).argmax(1)
    for name in ("float16.tflite", "dynamic.tflite", "int8.tflite"):
        model = backends.load(str(exports[name][0]))
        assert model.quantize == name.split(".")[0]
        got = model.predict(faces)
        assert (got.argmax(1) == expected).mean() >= 0.98, name
        np.testing.assert_allclose(got.sum(1), 1.0, atol=0.02)


def test_tta_and_empty_batches_work_on_exports(exports):
    model = backends.load(str(exports["dynamic.tflite"][0]))
    assert model.predict(np.zeros((0, 48, 48, 1), np.uint8)).shape == (0, 7)
    assert model.predict(synthetic_faces([1, 2]), tta=True).shape == (2, 7)


def test_evaluate_gives_the_same_report_shape_for_every_form(exports, tiny_checkpoint, synthetic_cache):
    reports = {}
    for name, path in [("checkpoint", tiny_checkpoint)] + [(n, p) for n, (p, _) in exports.items()]:
        proc = run_script("evaluate.py", "--checkpoint", path, "--data", synthetic_cache, "--json", check=0)
        reports[name] = json.loads(proc.stdout)
    keys = set(reports["checkpoint"])
    for name, report in reports.items():
        assert set(report) == keys, name
        assert report["backend"] == {"checkpoint": "checkpoint", "saved_model": "saved_model"}.get(name, "tflite")
    assert reports["float.tflite"]["accuracy"] == reports["checkpoint"]["accuracy"]
    # an exported model's reports sit beside it, named after it
    assert (exports["int8.tflite"][0].parent / "int8.eval_PrivateTest.json").exists()
    assert (exports["saved_model"][0].parent / "saved_model.eval_PrivateTest.json").exists()


def test_predict_gives_the_same_json_for_every_form(exports, tiny_checkpoint):
    def faces_of(path):
        proc = run_script("predict.py", SAMPLE, "--checkpoint", path, "--json", check=0)
        return json.loads(proc.stdout)[0]["faces"]
    reference = faces_of(tiny_checkpoint)
    for name, (path, _) in exports.items():
        got = faces_of(path)
        assert [f["box"] for f in got] == [f["box"] for f in reference]
        assert [set(f) for f in got] == [set(f) for f in reference]
        if name in ("saved_model", "float.tflite"):
            assert [f["emotion"] for f in got] == [f["emotion"] for f in reference]


def test_the_tflite_path_never_imports_tensorflow(exports, tmp_path):
    """predict.py and the API on a .tflite file: LiteRT only, so start-up skips TensorFlow's seconds."""
    path = exports["dynamic.tflite"][0]
    code = (f"import runpy, sys; sys.argv = ['predict.py', {SAMPLE!r}, '--checkpoint', {str(path)!r}, "
            f"'--explain', {str(tmp_path / 'exp')!r}]\n"
            "try:\n    runpy.run_path('predict.py', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "from ferkit import Recognizer\n"
            f"faces = Recognizer(checkpoint={str(path)!r}).recognize({SAMPLE!r})\n"
            "assert len(faces) == 1, faces\n"
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')]\n"
            "assert not loaded, loaded[:5]\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(tmp_path / "exp" / "astronaut_face1_attention.png")
    assert "INFO" not in proc.stderr and proc.stderr.strip() == ""


def test_saved_model_loads_with_plain_tensorflow_in_a_fresh_process(exports, tiny_checkpoint, faces, tmp_path):
    """No project code on the path (-I: isolated mode, run from an empty folder)."""
    np.save(tmp_path / "faces.npy", faces)
    code = ("import json, numpy as np, tensorflow as tf\n"
            f"model = tf.saved_model.load({str(exports['saved_model'][0])!r})\n"
            "f = model.signatures['serving_default']\n"
            f"out = f(faces=tf.constant(np.load({str(tmp_path / 'faces.npy')!r})))\n"
            f"np.save({str(tmp_path / 'out.npy')!r}, out['probabilities'].numpy())\n"
            f"meta = json.load(open({str(exports['saved_model'][0] / 'assets.extra' / 'ferkit.json')!r}))\n"
            "print(json.dumps(meta['emotions']))\n")
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    expected = checkpoints.Classifier(str(tiny_checkpoint)).predict(faces)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-4)


def _one_line_error(proc, phrase):
    """Exit 2 and one error line naming the problem (argparse's usage lines may come before it)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert phrase in lines[-1] and len([l for l in lines if "error" in l.lower()]) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_export_requests_write_nothing(tmp_path, tiny_checkpoint, synthetic_cache):
    before = set(os.listdir(tmp_path))
    cases = [
        (("--checkpoint", tmp_path / "nowhere", "--out", tmp_path / "a.tflite"), "not a checkpoint folder"),
        (("--checkpoint", tiny_checkpoint, "--out", tmp_path / "missing" / "a.tflite"), "does not exist"),
        (("--checkpoint", tiny_checkpoint, "--out", tmp_path / "sm", "--format", "saved_model", "--quantize", "dynamic"),
         "applies to --format tflite"),
        (("--checkpoint", tiny_checkpoint, "--out", tmp_path / "a.tflite", "--quantize", "int8",
          "--data", tmp_path / "no.npz"), "calibrates on Training faces"),
        (("--model", "no_such_model", "--out", tmp_path / "a.tflite"), "no_such_model"),
    ]
    for arguments, phrase in cases:
        _one_line_error(run_script("export.py", *arguments), phrase)
    assert set(os.listdir(tmp_path)) == before
    (tmp_path / "taken.tflite").write_bytes(b"mine")
    _one_line_error(run_script("export.py", "--checkpoint", tiny_checkpoint, "--out", tmp_path / "taken.tflite"),
                    "--overwrite")
    assert (tmp_path / "taken.tflite").read_bytes() == b"mine"


def test_overwrite_and_killed_exports_leave_no_partial_file(tmp_path, tiny_checkpoint, synthetic_cache):
    out = tmp_path / "m.tflite"
    stale = tmp_path / ".ferkit-999999999-0a1b2c3d.tmp.tflite"  # what a killed export left: a PID no process has
    stale.write_bytes(b"half")
    out.write_bytes(b"old")
    # --overwrite replaces a previous export of ours only: not this file of someone else's.
    _one_line_error(run_script("export.py", "--checkpoint", tiny_checkpoint, "--out", out, "--overwrite"),
                    "is not a model export.py wrote")
    assert out.read_bytes() == b"old"
    out.unlink()
    for _ in range(2):  # the second run replaces the first's export
        run_script("export.py", "--checkpoint", tiny_checkpoint, "--out", out, "--data", synthetic_cache, "--overwrite",
                   check=0)
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"]
    assert backends.load(str(out)).name == "acnn_alstm"
    sm = tmp_path / "sm"
    for _ in range(2):  # the second run replaces a SavedModel folder
        run_script("export.py", "--checkpoint", tiny_checkpoint, "--out", sm, "--data", synthetic_cache, "--overwrite",
                   check=0)
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "sm"]


def test_damaged_or_foreign_tflite_files_are_one_line_errors(tmp_path, exports, synthetic_cache):
    good = exports["dynamic.tflite"][0].read_bytes()
    (tmp_path / "cut.tflite").write_bytes(good[:len(good) // 2])
    (tmp_path / "text.tflite").write_bytes(b"hello, not a model")
    (tmp_path / "foreign.tflite").write_bytes(foreign_tflite())
    (tmp_path / "shape.tflite").write_bytes(foreign_tflite(with_our_metadata=True))
    cases = [("cut.tflite", "damaged or truncated"), ("text.tflite", "not a TFLite model"),
             ("foreign.tflite", "not a model exported by export.py"), ("shape.tflite", "not uint8 (N, 48, 48, 1)"),
             ("none.tflite", "no such file")]
    for name, phrase in cases:
        _one_line_error(run_script("predict.py", SAMPLE, "--checkpoint", tmp_path / name), phrase)
        _one_line_error(run_script("evaluate.py", "--checkpoint", tmp_path / name, "--data", synthetic_cache), phrase)
    assert not [n for n in os.listdir(tmp_path) if ".eval_" in n]


def foreign_tflite(with_our_metadata=False):
    """A valid .tflite of some other model (float input (N, 32)); optionally carrying our metadata."""
    from ferkit.cli import quiet_tensorflow
    from ferkit import exported
    tf = quiet_tensorflow()
    with tf.Graph().as_default(), tf.Session() as session:
        x = tf.placeholder(tf.float32, [None, 32], name="x")
        y = tf.nn.softmax(tf.matmul(x, tf.ones([32, 7])))
        content = tf.lite.TFLiteConverter.from_session(session, [x], [y]).convert()
    if with_our_metadata:
        meta = exported.metadata({"model": "acnn_alstm", "hparams": {}}, "elsewhere", "tflite", "none", ["probabilities"])
        content = exported.add_tflite_metadata(content, meta)
    return content


def test_halved_checkpoints_load_everywhere(tmp_path, tiny_checkpoint, synthetic_cache, faces):
    """tools/halve_checkpoint.py (how the shipped weights are stored): float16 on disk, float32 once loaded."""
    import shutil
    folder = tmp_path / "half"
    shutil.copytree(tiny_checkpoint, folder)
    shutil.rmtree(folder / "last")  # a shipped folder: best/ only
    before = sum(f.stat().st_size for f in (folder / "best").glob("*.data-*"))
    proc = run_script("tools/halve_checkpoint.py", folder, check=0)
    assert "MB ->" in proc.stdout
    assert sum(f.stat().st_size for f in (folder / "best").glob("*.data-*")) < 0.6 * before
    assert sorted(p.name for p in (folder / "best").iterdir() if not p.name.startswith("model.ckpt")) == ["checkpoint"]
    expected = checkpoints.Classifier(str(tiny_checkpoint)).predict(faces)
    got = checkpoints.Classifier(str(folder)).predict(faces)
    np.testing.assert_allclose(got, expected, atol=5e-3)
    # fine-tuning and export read it too
    run_script("train.py", "--arch", "acnn_alstm", "--data", synthetic_cache, "--epochs", 1, "--batch-size", 16,
               "--max-steps", 2, "--init-from", folder, "--out", tmp_path / "tuned", check=0)
    run_script("export.py", "--checkpoint", folder, "--out", tmp_path / "half.tflite", "--data", synthetic_cache, check=0)
    np.testing.assert_allclose(backends.load(str(tmp_path / "half.tflite")).predict(faces), got, atol=1e-4)
    # a folder whose training can still resume (stopped by --max-steps) is refused, untouched
    proc = run_script("tools/halve_checkpoint.py", tmp_path / "tuned")
    assert proc.returncode == 2 and "has not finished" in proc.stderr


def test_overwrite_never_replaces_a_source_or_a_foreign_folder(tmp_path, tiny_checkpoint):
    """--out naming the checkpoint itself, a folder above it, a folder of photos, a shipped model or
    nothing: refused, and every file is still there, byte for byte."""
    import shutil
    source = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, source)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "me.jpg").write_bytes(b"a photo")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    cases = [(source, "is (or holds) the checkpoint being exported"), (tmp_path, "is (or holds) the checkpoint"),
             (photos, "is not a model export.py wrote"),
             (os.path.join(backends.PRETRAINED, "dnn", "model.tflite"), "inside a shipped model"),
             ("", "--out is empty")]
    for out, phrase in cases:
        _one_line_error(run_script("export.py", "--checkpoint", source, "--out", out, "--overwrite"), phrase)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_saved_model_with_another_signature_is_refused_before_its_graph_runs(tmp_path, exports):
    """A SavedModel's init op runs when it is loaded (this one writes a file); one whose signature is
    not export.py's is refused before anything of it runs, and one without a model name too."""
    import shutil

    from ferkit import exported
    from ferkit.cli import UserError, quiet_tensorflow
    tf = quiet_tensorflow()
    crafted, marker = tmp_path / "crafted", tmp_path / "written_by_the_graph"
    with tf.Graph().as_default(), tf.Session() as session:
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        builder = tf.saved_model.builder.SavedModelBuilder(str(crafted))
        signature = tf.saved_model.signature_def_utils.predict_signature_def({"x": x}, {"probabilities": x * 2})
        builder.add_meta_graph_and_variables(session, ["serve"], {"serving_default": signature},
                                             main_op=tf.io.write_file(str(marker), "ran"))
        builder.save()
    meta = json.loads((exports["saved_model"][0] / exported.SAVED_MODEL_METADATA).read_text())
    (crafted / "assets.extra").mkdir()
    (crafted / exported.SAVED_MODEL_METADATA).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="serving signature .* is not the one export.py writes"):
        backends.load(str(crafted))
    assert not marker.exists()
    nameless = tmp_path / "nameless"
    shutil.copytree(exports["saved_model"][0], nameless)
    (nameless / exported.SAVED_MODEL_METADATA).write_text(json.dumps({k: v for k, v in meta.items() if k != "model"}))
    with pytest.raises(UserError, match="lacks a model name"):
        backends.load(str(nameless))
    proc = run_script("predict.py", SAMPLE, "--checkpoint", crafted, check=2)
    assert proc.stderr.count("\n") == 1 and "serving signature" in proc.stderr and not marker.exists()
