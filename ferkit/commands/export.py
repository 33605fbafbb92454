"""Export a trained model for use outside train.py's checkpoints.

    ferkit export --model acnn_alstm --out acnn_alstm.tflite [--quantize none|dynamic|int8]
    ferkit export --checkpoint DIR --out DIR --format saved_model
    (python export.py takes the same options)

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
from ferkit import cli, exporting


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    cli.add_model_options(parser, required=True, checkpoint_help="a checkpoint folder written by train")
    parser.add_argument("--out", required=True, metavar="PATH", help="the .tflite file or SavedModel folder to write")
    parser.add_argument("--format", choices=("tflite", "saved_model"),
                        help="(default: tflite when --out ends in .tflite, else saved_model)")
    parser.add_argument("--quantize", choices=exporting.QUANTIZE, default="none", help="tflite only (default: %(default)s)")
    cli.add_data_option(parser, "FER-2013 cache or download: PublicTest for the accuracy check, Training faces to "
                                "calibrate int8")
    parser.add_argument("--calibration-faces", type=int, default=500, metavar="N",
                        help="int8: this many Training faces, drawn at random with a fixed seed (default: %(default)s)")
    cli.add_overwrite(parser, "replace --out if it exists (only an earlier export)")
    args = parser.parse_args(argv)
    if args.format == "saved_model" and args.quantize != "none" or (
            not args.format and not args.out.endswith(".tflite") and args.quantize != "none"):
        parser.error(f"--quantize {args.quantize} applies to --format tflite; a SavedModel keeps float32 weights")
    if args.calibration_faces < 1:
        parser.error(f"--calibration-faces must be at least 1, got {args.calibration_faces}")
    if not args.out.strip():
        parser.error("--out is empty; give the .tflite file or SavedModel folder to write, such as runs/model.tflite")
    return args


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    exporting.export(args.out, checkpoint=args.checkpoint, model=args.model, format=args.format, quantize=args.quantize,
                     data=args.data, calibration_faces=args.calibration_faces, overwrite=args.overwrite)
    return 0
