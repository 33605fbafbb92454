"""The models, by name, and the loss they share.

  logits, end_points = models.inference(name, images, is_training, seed=None, **hparams)
  loss = models.loss(logits, labels, label_smoothing)   # or targets=(N, 7) distributions
  hparams = models.default_hparams(name)

images: float32 (N, 48, 48, 1) from ferkit.faces.to_model_input; is_training: a
bool tensor; logits: (N, 7), unscaled (softmax is applied in the loss and at
prediction time).  Model functions read nothing but their arguments.
"""
import functools
import importlib
import inspect

# name -> (module under models/, fixed keyword arguments).  Modules are imported on first
# use, so that `import models` (and a script's argument check) does not wait for TensorFlow.
MODELS = {
    "dnn": ("dnn", {}),
    "acnn_alstm": ("acnn_alstm", {}),
    "cnn_lstm": ("acnn_alstm", {"local_attention": False, "global_attention": False}),
    "cnn_alstm": ("acnn_alstm", {"local_attention": False, "global_attention": True}),
}


def get(name):
    """Model function for `name`; ValueError listing the known names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return functools.partial(_module(name).inference, **MODELS[name][1])


def _module(name):
    return importlib.import_module(f"{__name__}.{MODELS[name][0]}")


def default_hparams(name):
    """The keyword defaults of the model function: its hyperparameters, as saved beside checkpoints."""
    params = inspect.signature(get(name)).parameters
    return {k: p.default for k, p in params.items()
            if p.default is not inspect.Parameter.empty
            and k not in ("num_classes", "local_attention", "global_attention", "seed")}


def check_hparams(name, hparams):
    """Raise ValueError saying which hyperparameter is out of its range: widths and counts
    (ints) at least 1, or in the range the model's module gives them in INT_RANGES (the
    widths' upper ends: what trains in this machine's memory), dropout in [0, 1),
    weight_decay in [0, 1], other floats finite and at least 0."""
    defaults = default_hparams(name)
    ranges = getattr(_module(name), "INT_RANGES", {})
    for key, value in hparams.items():
        if key not in defaults:
            raise ValueError(f"{name} has no hyperparameter {key!r}; it has {', '.join(defaults)}")
        if key in ranges:
            low, high = ranges[key]
            if not (isinstance(value, int) and low <= value <= high):
                raise ValueError(f"{key}={value!r}: must be a whole number from {low} to {high}")
        elif isinstance(defaults[key], int) and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{key}={value!r}: must be a whole number, at least 1")
        if isinstance(defaults[key], float):
            if not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{key}={value!r}: must be a finite number")
            if key == "dropout" and not 0 <= value < 1:
                raise ValueError(f"{key}={value!r}: must be in [0, 1) (the fraction of units dropped)")
            if value < 0:
                raise ValueError(f"{key}={value!r}: must be at least 0")
            if key == "weight_decay" and value > 1:
                raise ValueError(f"{key}={value!r}: must be at most 1 (a penalty that large leaves nothing to learn)")


def inference(name, images, is_training, seed=None, **hparams):
    """Build model `name` on images (N, 48, 48, 1) -> logits (N, 7), end_points.  seed: None, or an
    int64 (2,) tensor that makes training's dropout stateless (a function of the seed alone)."""
    return get(name)(images, is_training, seed=seed, **hparams)


def loss(logits, labels=None, label_smoothing=0.0, targets=None):
    """Mean softmax cross-entropy against int labels (N,), or against targets (N, 7), probability
    distributions such as FER+'s vote shares; plus the weight-decay terms the layers registered.

    Softmax is applied here, not in the model, because the fused op is
    numerically stable where log(softmax) is not.
    """
    from .layers import tf
    if targets is None:
        targets = tf.one_hot(labels, logits.shape[-1])
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / float(logits.shape[-1])
    cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))
    regularization = tf.add_n(tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES) or [tf.constant(0.0)])
    return cross_entropy + regularization, cross_entropy
