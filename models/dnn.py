"""The baseline DNN: two conv layers with local response normalisation, then three dense layers.

  logits, end_points = inference(images, is_training, dropout=0.25, weight_decay=1e-4)

images: float32 (N, 48, 48, 1) from ferkit.faces.to_model_input; logits (N, 7).

Layer order follows the project's description: conv1 5x5x64 + ReLU, max-pool,
LRN; conv2 3x3x64 + ReLU reading the *normalised* pool (the original code fed
it the un-normalised one), LRN, max-pool; dense 384 + ReLU; dense 192 + ReLU
(the original left it linear, which only composes two linear maps); linear 7.
Dropout (0.25) on the dense layers and weight decay (1e-4) are ours: without
them the 3.5M-parameter dense block memorises Training; with 0.5 and 5e-4 the
net underfit (PublicTest 0.43 after 4 epochs, against 0.48 with these).
"""
from . import layers
from .layers import conv2d, dense, max_pool, tf


def _lrn(x):
    # The CIFAR-10 tutorial's settings, which the original DNN copied.
    return tf.nn.local_response_normalization(x, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75)


def inference(images, is_training, num_classes=7, dropout=0.25, weight_decay=1e-4, seed=None):
    """images (N, 48, 48, 1), is_training bool tensor -> logits (N, num_classes), end_points dict.
    seed: None or an int64 (2,) tensor for stateless dropout (layers.dropout), one stream per layer."""
    seeds = (None, None) if seed is None else (layers.substream(seed, 32), layers.substream(seed, 33))
    end_points = {}
    x = conv2d(images, 64, 5, "conv1", weight_decay)
    x = _lrn(max_pool(x, 3, 2))                                   # (N, 24, 24, 64)
    x = conv2d(x, 64, 3, "conv2", weight_decay)
    x = max_pool(_lrn(x), 3, 2)                                   # (N, 12, 12, 64)
    end_points["features"] = x
    x = tf.reshape(x, [-1, x.shape[1] * x.shape[2] * x.shape[3]])
    x = dense(layers.dropout(x, dropout, is_training, seeds[0]), 384, "dense1", weight_decay, relu=True)
    x = dense(layers.dropout(x, dropout, is_training, seeds[1]), 192, "dense2", weight_decay, relu=True)
    logits = dense(x, num_classes, "logits")
    return logits, end_points

