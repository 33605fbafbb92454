"""Training-time augmentation, inside the graph so it runs in TensorFlow's thread pool.

  augmented = augment(images, erase=0.0, seed=None)    float32 (N, 48, 48, 1) -> same shape

seed None: TensorFlow's stateful random ops.  seed an int64 (2,) tensor (run seed, step), as
train.py feeds: every draw is stateless, a function of the seed alone, so a run resumed at a
step augments exactly as an uninterrupted one did there.

Each face gets its own random horizontal flip, rotation (+-10 degrees),
scale (0.9-1.1) and shift (+-4 px), applied as one projective warp with
reflected borders: a single op for the whole batch, so augmentation costs a
small fraction of a training step (benchmarks/bench_train.py measures it).
With erase=P, each warped face then has, with probability P, one random
rectangle (2-20% of its area, aspect ratio 1:3 to 3:1) set to 0, the mean
input value: random erasing (Zhong et al. 2020), which makes the model use
more of the face than its single most telling part.
"""
import math

# Plain TensorFlow: whoever builds a graph has set it up first (ferkit.cli.quiet_tensorflow).
import tensorflow.compat.v1 as tf

from ferkit.models.layers import substream


def augment(images, max_degrees=10.0, max_scale=0.1, max_shift=4.0, erase=0.0, seed=None):
    n = tf.shape(images)[0]
    size = float(images.shape[1])
    centre = (size - 1.0) / 2.0

    def uniform(low, high, s):
        if seed is None:
            return tf.random.uniform([n], low, high)
        return tf.random.stateless_uniform([n], substream(seed, s), low, high)

    angle = uniform(-max_degrees, max_degrees, 0) * (math.pi / 180.0)
    scale = uniform(1.0 - max_scale, 1.0 + max_scale, 1)
    flip = tf.where(uniform(0.0, 1.0, 2) < 0.5, -tf.ones([n]), tf.ones([n]))
    tx, ty = uniform(-max_shift, max_shift, 3), uniform(-max_shift, max_shift, 4)
    # The warp maps each output pixel (x, y) to the input pixel it samples:
    # input = M (output - centre) + centre + shift, M = rotation / scale with x mirrored.
    a0, a1 = flip * tf.cos(angle) / scale, -tf.sin(angle) / scale
    b0, b1 = flip * tf.sin(angle) / scale, tf.cos(angle) / scale
    a2 = centre - (a0 + a1) * centre + tx
    b2 = centre - (b0 + b1) * centre + ty
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=images.shape[1:3].as_list(),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    warped.set_shape(images.shape)
    if erase > 0:
        warped = random_erase(warped, erase, uniform)
    return warped


def random_erase(images, probability, uniform, min_area=0.02, max_area=0.2, max_aspect=3.0):
    """images (N, H, W, 1) with, per face and with `probability`, one rectangle set to 0; uniform(low, high, s) -> (N,)."""
    height, width = float(images.shape[1]), float(images.shape[2])
    area = uniform(min_area, max_area, 5) * height * width
    aspect = tf.exp(uniform(-math.log(max_aspect), math.log(max_aspect), 6))
    h = tf.minimum(tf.sqrt(area * aspect), height)
    w = tf.minimum(tf.sqrt(area / aspect), width)
    top = uniform(0.0, 1.0, 7) * (height - h)
    left = uniform(0.0, 1.0, 8) * (width - w)
    applied = tf.cast(uniform(0.0, 1.0, 9) < probability, tf.float32)
    ys = tf.range(height)[None, :, None]
    xs = tf.range(width)[None, None, :]
    inside = ((ys >= top[:, None, None]) & (ys < (top + h)[:, None, None]) &
              (xs >= left[:, None, None]) & (xs < (left + w)[:, None, None]))
    keep = 1.0 - tf.cast(inside, tf.float32) * applied[:, None, None]
    return images * keep[..., None]
