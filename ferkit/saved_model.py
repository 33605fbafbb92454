"""The SavedModel runtime: a SavedModel folder written by export.py, restored into a graph and
session of its own (TensorFlow).

  model = SavedModel(path)
  model.predict(faces uint8 (N, 48, 48, 1), batch_size, extra=(), tta=False) -> probabilities float32 (N, 7)

Loading a SavedModel runs what its graph holds: load only exports of your own.  The signature is
checked against the one export.py writes (input "faces", the metadata's outputs) before any use.
"""
import json
import os

from ferkit.batched import BatchedModel
from ferkit.cli import UserError
from ferkit.exported import SAVED_MODEL_METADATA, check_metadata
from ferkit.dataset import IMAGE_SIZE


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
        check_signature(path, meta["outputs"])
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


def check_signature(path, outputs):
    """Before anything of the graph runs: the folder's serving signature must be the one export.py
    writes (one uint8 input "faces" (N, 48, 48, 1), exactly the metadata's outputs); UserError if not."""
    from ferkit.cli import quiet_tensorflow
    quiet_tensorflow()  # before anything of TensorFlow is imported: its start-up log lines
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            saved.ParseFromString(f.read())
        signature = saved.meta_graphs[0].signature_def["serving_default"]
    except (OSError, DecodeError, IndexError, KeyError) as e:
        raise UserError(f"{path}: the SavedModel cannot be read ({type(e).__name__}: {e}); export it again") from None
    inputs = dict(signature.inputs)
    # DT_UINT8 is 4 in TensorFlow's types.proto; the shape is (-1 or N, 48, 48, 1).
    shape = [d.size for d in inputs["faces"].tensor_shape.dim] if "faces" in inputs else []
    if (set(inputs) != {"faces"} or inputs["faces"].dtype != 4 or shape[1:] != [IMAGE_SIZE, IMAGE_SIZE, 1]
            or set(signature.outputs) != set(outputs)):
        raise UserError(f"{path}: its serving signature (inputs {sorted(inputs)}, outputs {sorted(signature.outputs)}) "
                        "is not the one export.py writes; load only SavedModels exported by export.py")
