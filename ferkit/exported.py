"""What export.py writes into every exported model, and how it is read back: one module for both.

  metadata(config, source, fmt, quantize, outputs) -> the JSON object (format, model, emotions, input,
                                   outputs, quantize, source) that export.py writes
  add_tflite_metadata(content, meta) -> .tflite bytes carrying it (needs TensorFlow's flatbuffer tools)
  read_tflite_metadata(content)     -> that object from .tflite bytes, or None (LiteRT's schema only)
  SAVED_MODEL_METADATA              where a SavedModel folder keeps it (assets.extra/ferkit.json)
  check_metadata(meta, path)        UserError unless meta is ours, for these emotions
  is_export(path)                   whether path is a file or folder export.py wrote

The exported graph takes uint8 faces (N, 48, 48, 1) in 0..255 and does ferkit.dataset.normalise
inside; its outputs come in metadata order, probabilities (N, 7) first.
"""
import json
import os
import struct

import numpy as np

from ferkit.cli import UserError
from ferkit.dataset import EMOTIONS, IMAGE_SIZE, INPUT_MEAN, INPUT_STD

METADATA_NAME = "ferkit"                  # the name of our entry in the .tflite file's metadata list
SAVED_MODEL_METADATA = os.path.join("assets.extra", "ferkit.json")
FORMAT = "ferkit-exported-model"


def metadata(config, source, fmt, quantize, outputs):
    """The JSON object export.py writes into every exported model (read back by read_tflite_metadata and check_metadata)."""
    return {
        "format": FORMAT, "version": 1, "model": config["model"], "emotions": list(EMOTIONS),
        "input": {"name": "faces", "dtype": "uint8", "shape": [None, IMAGE_SIZE, IMAGE_SIZE, 1], "range": [0, 255],
                  "normalisation": f"(x - {INPUT_MEAN}) / {INPUT_STD}, inside the model",
                  "framing": "grayscale faces aligned like FER-2013's (ferkit.faces.crop_face)"},
        "outputs": outputs, "file_format": fmt, "quantize": quantize,
        "source": {"checkpoint": source, "hparams": config["hparams"]},
    }


def add_tflite_metadata(content, meta):
    """A .tflite file's bytes with `meta` (JSON) added to its metadata list, under METADATA_NAME."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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
    outputs = meta.get("outputs")
    if (not isinstance(meta.get("model"), str) or not isinstance(outputs, list) or not outputs
            or outputs[0] != "probabilities" or not all(isinstance(o, str) for o in outputs)):
        raise UserError(f"{path}: its {METADATA_NAME} metadata lacks a model name or its outputs (probabilities "
                        "first); export it again with export.py")
    return meta
