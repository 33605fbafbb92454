"""Export, as a library: a trained checkpoint as a .tflite file (LiteRT) or a SavedModel folder.

    from ferkit import exporting
    path = exporting.export(model="acnn_alstm", out="runs/acnn_alstm.tflite", quantize="dynamic")

What the formats and quantizations are, and what an export carries: `ferkit export --help`
(ferkit/commands/export.py).  The output appears only when complete; an existing one is replaced
only with overwrite=True, and only if it is an export.  After writing, the export is loaded back
through the loader predict and evaluate use, and its PublicTest accuracy is printed beside the
checkpoint's (when `data` is there).
"""
import os
import sys

import numpy as np

from ferkit import backends, cli, exported, files
from ferkit.dataset import CACHE

QUANTIZE = ("none", "float16", "dynamic", "int8")


def convert(tf, session, graph, quantize, calibration):
    """The restored graph -> .tflite bytes.  calibration: uint8 Training faces for int8."""
    converter = tf.lite.TFLiteConverter.from_session(session, [graph.images], graph.outputs)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    with cli.captured_stderr():  # the converter's C++ progress lines
        if quantize != "int8":
            return converter.convert()
        faces = lambda: ([face[None]] for face in calibration)  # noqa: E731
        converter.representative_dataset = faces
        # The softmaxes (attention weights, probabilities) stay float: XNNPACK has no int8 softmax, so
        # int8 ones would run on slower kernels and cut the graph into pieces; as float they cost nothing.
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["SOFTMAX"])
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=faces,
                                                             debug_options=options)
        return debugger.get_nondebug_quantized_model()


def write_saved_model(tf, session, graph, path, meta):
    builder = tf.saved_model.Builder(path)
    signature = tf.saved_model.predict_signature_def({"faces": graph.images}, dict(zip(meta["outputs"], graph.outputs)))
    builder.add_meta_graph_and_variables(session, [tf.saved_model.tag_constants.SERVING],
                                         signature_def_map={"serving_default": signature}, strip_default_attrs=True)
    builder.save()
    os.makedirs(os.path.join(path, os.path.dirname(exported.SAVED_MODEL_METADATA)))
    files.write_json(os.path.join(path, exported.SAVED_MODEL_METADATA), meta)


def check_out(out, source, overwrite):
    """Refuse an --out that would replace anything but a previous export of ours, or touch the source."""
    real, src = os.path.realpath(out), os.path.realpath(source)
    if real == src or os.path.commonpath([real, src]) == real:
        raise cli.UserError(f"--out {out}: is (or holds) the checkpoint being exported, {source}; "
                            "nothing was changed. Choose another --out")
    if backends.is_shipped(out):
        raise cli.UserError(f"--out {out}: is inside a shipped model, which only tools/ship_exports.py writes; "
                            "choose another --out")
    if not os.path.lexists(out):
        return
    if not overwrite:
        raise cli.UserError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    if not exported.is_export(out):
        raise cli.UserError(f"--out {out}: exists and is not a model export.py wrote, so --overwrite does not "
                            "replace it (nothing was changed); choose another --out, or move it away yourself")


def check_request(folder, out, fmt, quantize, data, overwrite):
    """Everything about the request that can fail, before TensorFlow loads or anything is written."""
    if fmt not in ("tflite", "saved_model"):
        raise cli.UserError(f"format {fmt!r}: expected tflite or saved_model")
    if quantize not in QUANTIZE:
        raise cli.UserError(f"quantize {quantize!r}: expected one of {', '.join(QUANTIZE)}")
    if fmt == "saved_model" and quantize != "none":
        raise cli.UserError(f"--quantize {quantize} applies to --format tflite; a SavedModel keeps float32 weights")
    check_out(out, folder, overwrite)
    files.check_outputs([("--out", out, "file" if fmt == "tflite" else "folder")],
                        inputs=backends.model_inputs(folder) + [data], overwrite=True)  # overwrite: check_out's
    if fmt == "tflite" and os.path.isdir(out):
        raise cli.UserError(f"--out {out}: is a folder; a TFLite export is one file, such as model.tflite")
    cli.output_parent(out, "--out", "the export")
    if quantize == "int8" and not os.path.exists(data):
        raise cli.UserError(f"{data}: no such file; int8 export calibrates on Training faces: "
                            "make the cache with preprocess or give --data")


def calibration_set(loaded, data, faces):
    """int8: `faces` Training faces, drawn at random with a fixed seed -> uint8 (n, 48, 48, 1)."""
    train = loaded.get("Training", ((), ()))[0]
    if len(train) == 0:
        raise cli.UserError(f"{data}: no Training faces to calibrate int8 with")
    rng = np.random.default_rng(0)
    return train[rng.choice(len(train), min(faces, len(train)), replace=False)]


def write_export(config, folder, out, fmt, quantize, calibration, overwrite):
    """Restore the checkpoint into an inference graph and write it -> the checkpoint prefix it came from."""
    from ferkit import checkpoints
    tf = cli.quiet_tensorflow()
    with tf.Graph().as_default():
        graph = checkpoints.build(config, trainable=False, uint8_faces=True)
        names = ["probabilities"] + (["local_attention"] if "local_attention" in graph.end_points else [])
        graph.outputs = [graph.probabilities] + [tf.identity(graph.end_points[k], name=k) for k in names[1:]]
        with tf.Session() as session:
            source = checkpoints.restore(session, graph.model_variables, folder)
            meta = exported.metadata(config, source, fmt, quantize, names)
            if fmt == "tflite":
                content = exported.add_tflite_metadata(convert(tf, session, graph, quantize, calibration), meta)
                with files.atomic_write(out, "wb", exclusive=not overwrite) as f:
                    f.write(content)
            else:
                with files.atomic_path(out, directory=True, exclusive=not overwrite) as tmp:
                    with files.no_space_is_one_line(out):
                        write_saved_model(tf, session, graph, tmp, meta)
    return source


def compare(folder, out, loaded, data, log=None):
    """The export's PublicTest accuracy beside the checkpoint's, and how far their outputs differ."""
    log = log or sys.stdout  # looked up at the call: callers (and tests) redirect sys.stdout
    from ferkit import checkpoints
    faces, labels = loaded.get("PublicTest", ((), ()))
    if len(labels) == 0:
        print(f"accuracy not measured: no PublicTest faces at {data} (give --data)", file=log)
        return
    mine = backends.load(out).predict(faces)
    theirs = checkpoints.Classifier(folder).predict(faces)
    same = float((mine.argmax(1) == theirs.argmax(1)).mean())
    print(f"PublicTest ({len(labels)} faces): checkpoint {(theirs.argmax(1) == labels).mean():.4f}, "
          f"exported {(mine.argmax(1) == labels).mean():.4f}; same top-1 on {same:.2%} of faces, "
          f"largest probability difference {np.abs(mine - theirs).max():.2g}", file=log)


def export(out, checkpoint=None, model=None, format=None, quantize="none", data=CACHE, calibration_faces=500,
           overwrite=False, log=None):
    """Write the checkpoint folder `checkpoint` (or the shipped model `model`) to `out` -> out.

    format: "tflite" or "saved_model" (default: tflite when out ends in .tflite).  quantize (tflite):
    none, float16, dynamic or int8 (calibrated on calibration_faces Training faces of `data`).
    overwrite: replace an earlier export at out.  Raises FerkitError before anything is written."""
    log = log or sys.stdout  # looked up at the call: callers (and tests) redirect sys.stdout
    from ferkit import checkpoints, data as datasets
    out = out.rstrip("/") or out
    fmt = format or ("tflite" if out.endswith(".tflite") else "saved_model")
    folder = backends.resolve(checkpoint, model, fast=False)
    check_request(folder, out, fmt, quantize, data, overwrite)
    config = checkpoints.read_config(folder)  # before TensorFlow loads: a wrong name fails at once
    loaded = datasets.load(data).splits if os.path.exists(data) else {}
    calibration = calibration_set(loaded, data, calibration_faces) if quantize == "int8" else None
    source = write_export(config, folder, out, fmt, quantize, calibration, overwrite)
    kind = {"none": "float32", "float16": "float16 weights", "dynamic": "dynamic-range quantized (int8 weights)",
            "int8": "int8"}[quantize]
    print(f"wrote {out}: {fmt}, {kind}, {cli.size_of(out) / 1e6:.2f} MB "
          f"(checkpoint weights {cli.size_of(source + '.data-00000-of-00001') / 1e6:.2f} MB)", file=log)
    compare(folder, out, loaded, data, log)
    return out
