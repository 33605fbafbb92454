"""The one loader of trained models, whatever form they are in: predict, evaluate and the API go through it.

  model = backends.load(path)           checkpoint folder (train.py), SavedModel folder or .tflite file (export.py)
  path = backends.resolve(checkpoint=None, model=None, fast=True)
                                        --checkpoint PATH as given; --model NAME -> the shipped model NAME
                                        (ferkit/pretrained/NAME, found beside this module wherever the package
                                        is installed), or with fast=True its exported model.tflite
  backends.is_shipped(path)             whether path is (inside) a shipped model: read-only to every command
  model.predict(faces uint8 (N, 48, 48, 1), batch_size, extra=(), tta=False) -> probabilities float32 (N, 7)
  model.name, .backend ("checkpoint", "saved_model", "tflite"), .path, .extras (names predict(extra=) can ask for)

A .tflite file runs on LiteRT (ai-edge-litert), which loads in a tenth of a second: neither this
module nor the TFLite path imports TensorFlow.  Checkpoints and SavedModels need TensorFlow.

What export.py writes, and what this module checks before trusting a file: the metadata
(METADATA_NAME, a JSON object: format, model, emotions, input, outputs, quantize, source)
inside the .tflite file or in SavedModel/assets.extra/ferkit.json; an input of uint8 faces
(N, 48, 48, 1) taken as 0..255 (the normalisation of ferkit.faces.to_model_input is inside
the exported graph); outputs in metadata order, probabilities (N, 7) first.
"""
import json
import os
import struct

import numpy as np

from ferkit.cli import UserError, captured_stderr
from ferkit.batched import BatchedModel
from ferkit.faces import EMOTIONS, IMAGE_SIZE

METADATA_NAME = "ferkit"                  # the name of our entry in the .tflite file's metadata list
SAVED_MODEL_METADATA = os.path.join("assets.extra", "ferkit.json")
FORMAT = "ferkit-exported-model"
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
        return TFLiteModel(path, num_threads)
    if found == "saved_model":
        return SavedModel(path)
    from ferkit import checkpoints
    return checkpoints.Classifier(path, bfloat16=bfloat16)


def is_export(path):
    """Whether path is a model export.py wrote (a .tflite file or SavedModel folder with our metadata):
    the only thing export.py --overwrite replaces."""
    try:
        if os.path.isdir(path):
            with open(os.path.join(path, SAVED_MODEL_METADATA)) as f:
                meta = json.load(f)
        else:
            with open(path, "rb") as f:
                content = f.read(64 << 20)
            meta = read_tflite_metadata(content) if content[4:8] == b"TFL3" else None
        check_metadata(meta, path)
        return True
    except (OSError, ValueError, UserError, IndexError, TypeError, struct.error):
        return False


def check_metadata(meta, path):
    """Raise UserError unless `meta` (a dict or None) describes a model export.py wrote for these emotions."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a model exported by export.py (no {METADATA_NAME} metadata); "
                        "export one with: python export.py --model NAME --out PATH")
    if list(meta.get("emotions", ())) != list(EMOTIONS):
        raise UserError(f"{path}: its emotions are {meta.get('emotions')}, not {list(EMOTIONS)}")
    return meta


class TFLiteModel(BatchedModel):
    """A .tflite file written by export.py, run by LiteRT with its XNNPACK CPU kernels (no TensorFlow)."""

    backend = "tflite"
    bfloat16 = False

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter
        self.path = self.folder = path
        self._threads = num_threads or os.cpu_count()
        try:
            with open(path, "rb") as f:
                content = f.read()
        except OSError as e:
            raise UserError(f"{path}: cannot read it ({e.strerror})") from None
        if content[4:8] != b"TFL3":
            raise UserError(f"{path}: not a TFLite model (no TFL3 identifier); give a .tflite file written by "
                            "export.py, a SavedModel folder or a checkpoint folder")
        try:  # LiteRT checks the whole file's structure first; the metadata is read only from a sound file
            with captured_stderr():  # LiteRT's 'INFO: Created TensorFlow Lite XNNPACK delegate' line
                self.interpreter = Interpreter(model_content=content, num_threads=self._threads)
            meta = read_tflite_metadata(content)
        except (ValueError, RuntimeError, IndexError, TypeError, struct.error) as e:
            raise UserError(f"{path}: the TFLite file is damaged or truncated ({str(e).splitlines()[0][:120]}); "
                            "export it again") from None
        self.metadata = check_metadata(meta, path)
        self.name = self.metadata["model"]
        self.quantize = self.metadata.get("quantize")
        self.extras = tuple(self.metadata["outputs"][1:])
        self._input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        if (len(outputs) != len(self.metadata["outputs"]) or self._input["dtype"] != np.uint8
                or tuple(self._input["shape"][1:]) != (IMAGE_SIZE, IMAGE_SIZE, 1)):
            raise UserError(f"{path}: takes {self._input['dtype'].__name__} {list(self._input['shape'])} with "
                            f"{len(outputs)} outputs, not uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 1) as its metadata says")
        self._outputs = {k: d["index"] for k, d in zip(self.metadata["outputs"], outputs)}
        self.shapes = {k: tuple(d["shape"][1:]) for k, d in zip(self.metadata["outputs"], outputs)}
        self._content = content
        self._planned = {}  # batch size -> an interpreter planned for it (a few, most recently used last)

    def _interpreter_for(self, batch):
        """An interpreter planned for `batch` faces.  Re-planning one for another batch size costs about
        a millisecond, more than classifying a face; a video alternating between one and two faces
        would pay it every frame, so a few planned interpreters are kept."""
        interpreter = self._planned.pop(batch, None)
        if interpreter is None:
            from ai_edge_litert.interpreter import Interpreter
            with captured_stderr():
                interpreter = self.interpreter if not self._planned else Interpreter(
                    model_content=self._content, num_threads=self._threads)
                interpreter.resize_tensor_input(self._input["index"], [batch, IMAGE_SIZE, IMAGE_SIZE, 1])
                interpreter.allocate_tensors()
            if len(self._planned) >= 4:
                self._planned.pop(next(iter(self._planned)))
        self._planned[batch] = interpreter
        return interpreter

    def _run(self, faces, names):
        interpreter = self._interpreter_for(len(faces))
        interpreter.set_tensor(self._input["index"], faces)
        interpreter.invoke()
        return {k: interpreter.get_tensor(self._outputs[k]) for k in names}

    def close(self):
        self.interpreter, self._planned = None, {}


class SavedModel(BatchedModel):
    """A SavedModel folder written by export.py, restored into a graph and session of its own."""

    backend = "saved_model"
    bfloat16 = False

    def __init__(self, path):
        from ferkit.cli import quiet_tensorflow
        self.path = self.folder = path
        try:
            with open(os.path.join(path, SAVED_MODEL_METADATA)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = None
        self.metadata = check_metadata(meta, path)
        self.name, self.quantize = meta["model"], None
        self.extras = tuple(meta["outputs"][1:])
        tf = quiet_tensorflow()
        self.graph = tf.Graph()
        self.session = tf.Session(graph=self.graph)
        try:
            graph_def = tf.saved_model.loader.load(self.session, ["serve"], path)
        except Exception as e:  # TensorFlow raises many kinds here (IOError, DataLossError, ...)
            raise UserError(f"{path}: the SavedModel cannot be loaded ({str(e).splitlines()[0][:160]}); export it again") from None
        signature = graph_def.signature_def["serving_default"]
        self._input = self.graph.get_tensor_by_name(signature.inputs["faces"].name)
        self._outputs = {k: self.graph.get_tensor_by_name(signature.outputs[k].name) for k in meta["outputs"]}
        self.shapes = {k: tuple(t.shape[1:]) for k, t in self._outputs.items()}

    def _run(self, faces, names):
        return self.session.run({k: self._outputs[k] for k in names}, {self._input: faces})

    def close(self):
        self.session.close()


def read_tflite_metadata(content):
    """The JSON object of our metadata entry in a .tflite file's bytes, or None when there is none."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.Model.GetRootAsModel(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            try:
                return json.loads(bytes(data).decode("utf-8"))
            except (ValueError, TypeError):
                return None
    return None
