"""What every model runtime shares: predict() over batches, extra outputs and test-time augmentation.

A runtime (ferkit.checkpoints.Classifier, ferkit.tflite.TFLiteModel, ferkit.saved_model.SavedModel)
subclasses BatchedModel and provides
  _run(faces uint8 (B, 48, 48, 1), names) -> {name: array (B, ...)}   one batch through the model
  shapes: {name: per-face shape}, extras: the names besides "probabilities" it can give, path
and gets
  predict(faces uint8 (N, 48, 48, 1), batch_size=256, extra=(), tta=False) -> probabilities float32 (N, 7)
  (with extra: (probabilities, {name: array}))
"""
import numpy as np

from ferkit.cli import UserError
from ferkit.dataset import IMAGE_SIZE
from ferkit.faces import tta_views


class BatchedModel:
    """predict() over batches and test-time augmentation, for models that run one batch with _run."""

    extras = ()

    def predict(self, faces, batch_size=256, extra=(), tta=False):
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
            raise ValueError(f"faces must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 1), got {faces.shape}")
        if tta:  # average probabilities over mirrored and shifted views (ferkit.faces.tta_views)
            return np.mean([self.predict(v, batch_size) for v in tta_views(faces)], axis=0)
        missing = [k for k in extra if k not in self.extras]
        if missing:
            raise UserError(f"{self.path}: has no {', '.join(missing)} output (it has: {', '.join(self.extras) or 'none'})")
        names = ["probabilities", *extra]
        outputs = {k: [] for k in names}
        for start in range(0, len(faces), batch_size):
            result = self._run(np.ascontiguousarray(faces[start:start + batch_size], dtype=np.uint8), names)
            for k in names:
                outputs[k].append(result[k])
        arrays = {k: np.concatenate(v) if v else np.zeros((0, *self.shapes[k]), np.float32) for k, v in outputs.items()}
        return (arrays["probabilities"], {k: arrays[k] for k in extra}) if extra else arrays["probabilities"]
