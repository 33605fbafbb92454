"""The one loader of trained models, whatever form they are in: predict, evaluate and the API go through it.

  model = backends.load(path)           checkpoint folder (train.py), SavedModel folder or .tflite file (export.py)
  path = backends.resolve(checkpoint=None, model=None, fast=True)
                                        --checkpoint PATH as given; --model NAME -> the shipped model NAME
                                        (ferkit/pretrained/NAME, found beside this module wherever the package
                                        is installed), or with fast=True its exported model.tflite
  backends.is_shipped(path)             whether path is (inside) a shipped model: read-only to every command
  model.predict(faces uint8 (N, 48, 48, 1), batch_size, extra=(), tta=False) -> probabilities float32 (N, 7)
  model.name, .backend ("checkpoint", "saved_model", "tflite"), .path, .extras (names predict(extra=) can ask for)

The runtimes, one module each behind ferkit.batched.BatchedModel's interface: ferkit.tflite
(LiteRT; loads in a tenth of a second, no TensorFlow), ferkit.saved_model and ferkit.checkpoints
(TensorFlow).  What an export carries and how it is checked: ferkit.exported.
"""
import os

from ferkit.cli import UserError

# The model predict, serve, annotate and Recognizer use unless told otherwise: the ACNN-ALSTM trained on
# FER+'s votes, by far the best on photos against FER+'s cleaner labels (README, "Faces in photos").
DEFAULT_MODEL = "acnn_alstm_ferplus"
FAST_FILE = "model.tflite"                # shipped beside a checkpoint: what predict.py runs for --model NAME
# The shipped models, inside the package: found wherever it is installed, never relative to the current folder.
PRETRAINED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


def shipped_models():
    """Names of the shipped models (folders of PRETRAINED holding a config.json), sorted."""
    names = os.listdir(PRETRAINED) if os.path.isdir(PRETRAINED) else []
    return sorted(n for n in names if os.path.isfile(os.path.join(PRETRAINED, n, "config.json")))


def is_shipped(path):
    """Whether path is a shipped model or a file in one: those are written by the release step
    (tools/ship_exports.py) alone, and every other command only reads them."""
    real, root = os.path.realpath(path), os.path.realpath(PRETRAINED)
    return os.path.commonpath([real, root]) == root


def model_inputs(path):
    """The paths a run reads of the model at path, for files.check_outputs: a checkpoint folder's
    own files (config, weights, state, log, plots; not the eval_* reports that evaluate.py writes
    there), or the .tflite file or SavedModel folder itself."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        return [os.path.join(path, n) for n in os.listdir(path) if not n.startswith(("eval_", "."))]
    return [path]


def resolve(checkpoint=None, model=None, fast=True):
    """--checkpoint PATH (any form) as given; --model NAME -> the shipped model NAME's folder, or its fast file."""
    if checkpoint:
        return checkpoint
    folder = os.path.join(PRETRAINED, model)
    if model not in shipped_models():
        raise UserError(f"no shipped model {model!r} (there are: {', '.join(shipped_models()) or 'none'}); "
                        "give a folder, SavedModel or .tflite file with --checkpoint")
    fast_file = os.path.join(folder, FAST_FILE)
    return fast_file if fast and os.path.isfile(fast_file) else folder


def kind(path):
    """'checkpoint', 'saved_model' or 'tflite' by what is at path; UserError if nothing usable is there."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return "saved_model"
        return "checkpoint"  # checkpoints.read_config says what is wrong if it is not one
    if os.path.isfile(path):
        return "tflite"      # TFLiteModel says what is wrong if it is not one
    raise UserError(f"{path}: no such file or folder (a checkpoint folder, a SavedModel folder or a .tflite file)")


def check(path):
    """What can be checked before TensorFlow loads (seconds): that path exists, and a checkpoint
    folder's config.json.  Scripts call it first, so that a wrong name or folder fails at once."""
    if kind(path) == "checkpoint":
        from ferkit import checkpoints
        checkpoints.read_config(path)


def load(path, bfloat16=False, num_threads=None):
    """Any of the three forms -> a model with .predict (see the module docstring)."""
    found = kind(path)
    if bfloat16 and found != "checkpoint":
        raise UserError(f"{path}: bfloat16 applies to checkpoints; an exported model runs as it was exported")
    if found == "tflite":
        from ferkit.tflite import TFLiteModel
        return TFLiteModel(path, num_threads)
    if found == "saved_model":
        from ferkit.saved_model import SavedModel
        return SavedModel(path)
    from ferkit import checkpoints
    return checkpoints.Classifier(path, bfloat16=bfloat16)
