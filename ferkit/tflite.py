"""The TFLite runtime: a .tflite file written by export.py, run by LiteRT (ai-edge-litert) with its
XNNPACK CPU kernels.  It loads in a tenth of a second and never imports TensorFlow.

  model = TFLiteModel(path, num_threads=None)
  model.predict(faces uint8 (N, 48, 48, 1), batch_size, extra=(), tta=False) -> probabilities float32 (N, 7)
"""
import os
import struct

import numpy as np

from ferkit.batched import BatchedModel
from ferkit.cli import UserError, captured_stderr
from ferkit.exported import check_metadata, read_tflite_metadata
from ferkit.dataset import IMAGE_SIZE


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
        try:  # planned once here: a file whose operators or buffers were cut fails now, in one line
            self._run(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8), self.metadata["outputs"][:1])
        except (ValueError, RuntimeError) as e:
            raise UserError(f"{path}: the TFLite file is damaged ({str(e).splitlines()[0][:120]}); "
                            "export it again") from None

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
