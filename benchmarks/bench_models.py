"""Training and inference speed of each model on this machine, and the input pipeline's share.

    python benchmarks/bench_models.py [--models dnn acnn_alstm cnn_lstm cnn_alstm] [--steps 30]
    python benchmarks/bench_models.py --models --checkpoint runs/res45   # the architecture a folder records

For each model, on random faces: parameters; floating-point operations per
face (a multiply-add counts two, as TensorFlow's profiler counts them); training images/s at batch 128
(a full train.py step: batch slicing, feeding, in-graph augmentation, Adam);
the same step without augmentation and with a fixed pre-sliced batch, whose
difference is what the input pipeline costs; and inference images/s at
batch 128 and 256 in the inference-only graph evaluate.py runs, in float32
and in bfloat16 (evaluate.py --bf16). Medians over --steps timed steps.
"""
import argparse
import time

import numpy as np

from ferkit import models
from ferkit import checkpoints
from ferkit.faces import to_model_input
from ferkit.cli import quiet_tensorflow

tf = quiet_tensorflow()


def median_seconds(fn, steps, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def flops_per_face(name, hparams):
    """Floating-point operations of one face through the model at inference (is_training False),
    as tf.profiler counts them: convolutions and matmuls at two per multiply-add, plus the ops
    (bias adds, batch norm, activations) that register a count."""
    graph = tf.Graph()
    with graph.as_default():
        models.inference(name, tf.zeros([1, 48, 48, 1]), False, **hparams)
        options = tf.profiler.ProfileOptionBuilder(tf.profiler.ProfileOptionBuilder.float_operation()) \
            .with_empty_output().build()
        return tf.profiler.profile(graph, options=options).total_float_ops


def bench(name, hparams, steps, rng):
    train_x = to_model_input(rng.integers(0, 256, (28709, 48, 48, 1), dtype=np.uint8))
    train_y = rng.integers(0, 7, 28709)
    graph = tf.Graph()
    with graph.as_default():
        net = checkpoints.build({"model": name, "hparams": hparams}, augmentation=True)
        total, _ = models.loss(net.logits, net.labels, 0.1)
        train_op = tf.train.AdamOptimizer(1e-3).minimize(total)
        n_params = sum(int(np.prod(v.shape)) for v in tf.trainable_variables())
        session = tf.Session()
        session.run(tf.global_variables_initializer())
    fixed = {net.images: train_x[:128], net.labels: train_y[:128], net.is_training: True}

    def full_step():
        batch = rng.integers(0, len(train_y), 128)
        session.run(train_op, {net.images: train_x[batch], net.labels: train_y[batch], net.is_training: True,
                               net.augment: True})

    full = median_seconds(full_step, steps)
    bare = median_seconds(lambda: session.run(train_op, fixed), steps)
    session.close()
    graph = tf.Graph()
    with graph.as_default():  # the inference-only graph that evaluate.py and predict.py build
        net = checkpoints.build({"model": name, "hparams": hparams}, trainable=False)
        init = tf.global_variables_initializer()
    speeds = []
    for bfloat16 in (False, True):
        session = tf.Session(graph=graph, config=checkpoints.session_config(bfloat16))
        session.run(init)
        speeds += [b / median_seconds(lambda b=b: session.run(net.logits, {net.images: train_x[:b]}), steps)
                   for b in (128, 256)]
        session.close()
    return (n_params, flops_per_face(name, hparams), 128 / full, 128 / bare, (full - bare) / full, *speeds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(models.MODELS), choices=list(models.MODELS),
                        help="models at their default hyperparameters (default: all)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                        help="also the model a checkpoint folder's config.json describes, such as one trained "
                             "with --set (repeatable; its weights are not read)")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"bfloat16 instructions on this CPU: {checkpoints.cpu_has_bfloat16()}")
    runs = [(name, name, models.default_hparams(name)) for name in args.models]
    for folder in args.checkpoint:
        config = checkpoints.read_config(folder)
        runs.append((folder, config["model"], config["hparams"]))
    width = max([12] + [len(label) + 2 for label, _, _ in runs])  # a --checkpoint path can be long
    columns = (("params", 11), ("MFLOPs", 8), ("train img/s", 13), ("no-input img/s", 16), ("input share", 13),
               ("infer@128", 11), ("infer@256", 11), ("bf16@128", 10), ("bf16@256", 10))
    print(f"{'model':<{width}}" + "".join(f"{title:>{w}}" for title, w in columns))
    for label, name, hparams in runs:
        n, flops, train, bare, share, *infer = bench(name, hparams, args.steps, rng)
        cells = (f"{n:,}", f"{flops / 1e6:.0f}", f"{train:.0f}", f"{bare:.0f}", f"{share:.1%}", *(f"{v:.0f}" for v in infer))
        print(f"{label:<{width}}" + "".join(f"{cell:>{w}}" for cell, (_, w) in zip(cells, columns)))


if __name__ == "__main__":
    main()
