"""Export a trained model for use outside train.py's checkpoints.

    python export.py --model acnn_alstm --out acnn_alstm.tflite [--quantize none|dynamic|int8]
    python export.py --checkpoint DIR --out DIR --format saved_model

tflite       one file for LiteRT / TensorFlow Lite (phones, a Raspberry Pi, and
             predict.py's fast path, which needs no TensorFlow).  --quantize:
               none     float32 weights and arithmetic, as the checkpoint
               float16  float16 weights (half the size), float32 arithmetic: for the
                        shipped checkpoints, whose weights are float16, exactly the same model
               dynamic  int8 weights, activations quantized on the fly (about 1/4 the size)
               int8     weights and activations int8, calibrated on Training faces
                        (never PublicTest or PrivateTest); softmaxes stay float
saved_model  a folder for TensorFlow Serving or any TensorFlow 2 program:
               f = tf.saved_model.load(DIR).signatures["serving_default"]
               f(faces=uint8 tensor (N, 48, 48, 1))["probabilities"]  -> (N, 7)
             float32 only.

Both take uint8 faces (N, 48, 48, 1), 0..255, framed like FER-2013
(ferkit.faces.crop_face does it for photos); the normalisation is inside the
model.  Outputs: "probabilities" (N, 7) in the order of the emotion names, and
for models with local attention "local_attention" (N, 36).  The emotion names,
the model name and the input description travel in the file's metadata
(the .tflite metadata list, or DIR/assets.extra/ferkit.json).

After writing, the export is loaded back through the same loader as
predict.py and evaluate.py, and its PublicTest accuracy is printed next to the
checkpoint's (when --data is there).  The output appears only when it is
complete; an existing one is replaced only with --overwrite.
"""
import os

import numpy as np

from ferkit import backends, cli, exported, files

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


def parse_args():
    parser = cli.ArgumentParser(__doc__)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", metavar="NAME", help="a shipped model (ferkit/pretrained/NAME)")
    who.add_argument("--checkpoint", metavar="DIR", help="a checkpoint folder written by train.py")
    parser.add_argument("--out", required=True, metavar="PATH", help="the .tflite file or SavedModel folder to write")
    parser.add_argument("--format", choices=("tflite", "saved_model"),
                        help="(default: tflite when --out ends in .tflite, else saved_model)")
    parser.add_argument("--quantize", choices=QUANTIZE, default="none", help="tflite only (default: %(default)s)")
    parser.add_argument("--data", default="data/fer2013.npz",
                        help="FER-2013 cache or download: PublicTest for the accuracy check, Training faces to calibrate "
                             "int8 (default: %(default)s)")
    parser.add_argument("--calibration-faces", type=int, default=500, metavar="N",
                        help="int8: this many Training faces, drawn at random with a fixed seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args()
    args.format = args.format or ("tflite" if args.out.endswith(".tflite") else "saved_model")
    if args.format == "saved_model" and args.quantize != "none":
        parser.error(f"--quantize {args.quantize} applies to --format tflite; a SavedModel keeps float32 weights")
    if args.calibration_faces < 1:
        parser.error(f"--calibration-faces must be at least 1, got {args.calibration_faces}")
    args.out = args.out.rstrip("/") or args.out
    if not args.out.strip():
        parser.error("--out is empty; give the .tflite file or SavedModel folder to write, such as runs/model.tflite")
    return args


def main():
    args = parse_args()
    fmt, out = args.format, args.out
    folder = backends.resolve(args.checkpoint, args.model, fast=False)
    check_out(out, folder, args.overwrite)
    files.check_outputs([("--out", out, "file" if fmt == "tflite" else "folder")],
                        inputs=backends.model_inputs(folder) + [args.data], overwrite=True)  # overwrite: check_out's
    if fmt == "tflite" and os.path.isdir(out):
        raise cli.UserError(f"--out {out}: is a folder; a TFLite export is one file, such as model.tflite")
    cli.output_parent(out, "--out", "the export")
    if args.quantize == "int8" and not os.path.exists(args.data):
        raise cli.UserError(f"{args.data}: no such file; int8 export calibrates on Training faces: "
                            "make the cache with preprocess.py or give --data")

    from ferkit import checkpoints, data
    config = checkpoints.read_config(folder)  # before TensorFlow loads: a wrong name fails at once
    loaded = data.load(args.data).splits if os.path.exists(args.data) else {}
    calibration = None
    if args.quantize == "int8":
        train = loaded.get("Training", ((), ()))[0]
        if len(train) == 0:
            raise cli.UserError(f"{args.data}: no Training faces to calibrate int8 with")
        rng = np.random.default_rng(0)
        calibration = train[rng.choice(len(train), min(args.calibration_faces, len(train)), replace=False)]

    tf = cli.quiet_tensorflow()
    with tf.Graph().as_default():
        graph = checkpoints.build(config, trainable=False, uint8_faces=True)
        names = ["probabilities"] + (["local_attention"] if "local_attention" in graph.end_points else [])
        graph.outputs = [graph.probabilities] + [tf.identity(graph.end_points[k], name=k) for k in names[1:]]
        with tf.Session() as session:
            source = checkpoints.restore(session, graph.model_variables, folder)
            meta = exported.metadata(config, source, fmt, args.quantize, names)
            if fmt == "tflite":
                content = exported.add_tflite_metadata(convert(tf, session, graph, args.quantize, calibration), meta)
                with files.atomic_write(out, "wb", exclusive=not args.overwrite) as f:
                    f.write(content)
            else:
                with files.atomic_path(out, directory=True, exclusive=not args.overwrite) as tmp:
                    with files.no_space_is_one_line(out):
                        write_saved_model(tf, session, graph, tmp, meta)
    kind = {"none": "float32", "float16": "float16 weights", "dynamic": "dynamic-range quantized (int8 weights)",
            "int8": "int8"}[args.quantize]
    print(f"wrote {out}: {fmt}, {kind}, {cli.size_of(out) / 1e6:.2f} MB "
          f"(checkpoint weights {cli.size_of(source + '.data-00000-of-00001') / 1e6:.2f} MB)")

    faces, labels = loaded.get("PublicTest", ((), ()))
    if len(labels) == 0:
        print(f"accuracy not measured: no PublicTest faces at {args.data} (give --data)")
        return 0
    mine = backends.load(out).predict(faces)
    theirs = checkpoints.Classifier(folder).predict(faces)
    same = float((mine.argmax(1) == theirs.argmax(1)).mean())
    print(f"PublicTest ({len(labels)} faces): checkpoint {(theirs.argmax(1) == labels).mean():.4f}, "
          f"exported {(mine.argmax(1) == labels).mean():.4f}; same top-1 on {same:.2%} of faces, "
          f"largest probability difference {np.abs(mine - theirs).max():.2g}")
    return 0


if __name__ == "__main__":
    cli.run(main)
