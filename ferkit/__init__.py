"""ferkit: facial expression recognition, as a library and as the `ferkit` command.

    from ferkit import Recognizer
    faces = Recognizer().recognize("photo.jpg")          # photos in, faces with emotions out (docs/api.md)

    result = ferkit.train("dnn", data="data/fer2013.npz", epochs=5)   # -> TrainResult; result.folder is the run
    report = ferkit.evaluate(checkpoint=result.folder)                # -> the report dict (accuracy, per_class...)
    path = ferkit.export(checkpoint=result.folder, out="dnn.tflite")  # -> the written path

Every mode of the `ferkit` command (ferkit/commands/) parses its options and calls this library;
the top-level scripts of a checkout (train.py, evaluate.py...) are the same modes.  Named ferkit,
not fer, so that it does not shadow (or get shadowed by) the `fer` package on PyPI.

Nothing is imported here until it is asked for: `import ferkit` is instant, and TensorFlow loads only
for a mode that needs it.
"""


def _version():
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ferkit")
    except PackageNotFoundError:  # a checkout on sys.path, never installed
        return "0+unknown"


__version__ = _version()


def train(arch, **options):
    """Train model `arch`; see ferkit.training.train -> TrainResult (os.fspath(result) is the run folder)."""
    from ferkit import training
    return training.train(arch, **options)


def evaluate(model=None, checkpoint=None, **options):
    """The report dict of one model (a shipped name, or a checkpoint folder / .tflite / SavedModel path)
    on a FER-2013 split; options as ferkit.evaluation.evaluate (data, split, tta, labels, out...)."""
    from ferkit import evaluation
    if (model is None) == (checkpoint is None):
        from ferkit.errors import FerkitError
        raise FerkitError("evaluate: give model=NAME or checkpoint=PATH, one of them")
    return evaluation.evaluate(models=[model] if model else (), checkpoints=[checkpoint] if checkpoint else (),
                               **options)[0]


def export(out, model=None, checkpoint=None, **options):
    """Write a trained model to `out` (.tflite or a SavedModel folder) -> out; see ferkit.exporting.export."""
    from ferkit import exporting
    return exporting.export(out, checkpoint=checkpoint, model=model, **options)


def __getattr__(name):
    # Recognizer imports OpenCV and LiteRT: loaded only when asked for.
    if name == "Recognizer":
        from ferkit.recognizer import Recognizer
        return Recognizer
    if name == "DEFAULT_MODEL":
        from ferkit.backends import DEFAULT_MODEL
        return DEFAULT_MODEL
    if name == "PhotoError":  # what Recognizer.recognize raises for an unusable image, naming it
        from ferkit.photos import PhotoError
        return PhotoError
    if name == "FerkitError":  # the base of every error the toolkit raises: catch this one
        from ferkit.errors import FerkitError
        return FerkitError
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
