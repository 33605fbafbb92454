"""Layers from plain tf.nn ops and get_variable (no Keras, no tf.layers).

Every layer opens its own variable_scope, so variable names are stable:
<scope>/weights, <scope>/biases, <scope>/bn/{gamma,beta,moving_mean,moving_variance}.
Weight decay is attached as a get_variable regularizer, and models.loss()
collects it from tf.GraphKeys.REGULARIZATION_LOSSES.
"""
# TensorFlow 1.x graph mode, set up (quietly, eager execution off) by whoever builds the graph:
# the scripts through ferkit.cli.quiet_tensorflow.  Nothing under models/ configures it.
import tensorflow.compat.v1 as tf


def _weights(shape, weight_decay, fan_in_gain=2.0):
    # He initialisation for ReLU layers (gain 2), Glorot-like for linear ones (gain 1).
    return tf.get_variable("weights", shape, initializer=tf.variance_scaling_initializer(fan_in_gain),
                           regularizer=(lambda w: weight_decay * tf.nn.l2_loss(w)) if weight_decay else None)


def _biases(n, value=0.0):
    return tf.get_variable("biases", [n], initializer=tf.constant_initializer(value))


def batch_norm(x, is_training, decay=0.99, epsilon=1e-3):
    """Batch normalisation of the last axis of x (N, H, W, C) or (N, C).

    is_training: a bool tensor, or a Python bool for a graph that only trains or only infers.

    Training uses batch statistics and updates the moving averages (the update
    runs whenever the output is computed, so no UPDATE_OPS bookkeeping);
    inference uses the moving averages.
    """
    with tf.variable_scope("bn"):
        c = x.shape[-1]
        gamma = tf.get_variable("gamma", [c], initializer=tf.ones_initializer())
        beta = tf.get_variable("beta", [c], initializer=tf.zeros_initializer())
        moving_mean = tf.get_variable("moving_mean", [c], initializer=tf.zeros_initializer(), trainable=False)
        moving_var = tf.get_variable("moving_variance", [c], initializer=tf.ones_initializer(), trainable=False)
        fused = x.shape.ndims == 4  # the fused op, which oneDNN merges with the conv before it

        def train():
            if fused:
                y, mean, var = tf.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)
            else:
                mean, var = tf.nn.moments(x, [0])
                y = tf.nn.batch_normalization(x, mean, var, beta, gamma, epsilon)
            updates = [tf.assign_sub(moving_mean, (1 - decay) * (moving_mean - mean)),
                       tf.assign_sub(moving_var, (1 - decay) * (moving_var - var))]
            with tf.control_dependencies(updates):
                return tf.identity(y)

        def infer():
            if fused:
                return tf.nn.fused_batch_norm(x, gamma, beta, moving_mean, moving_var, epsilon, is_training=False)[0]
            return tf.nn.batch_normalization(x, moving_mean, moving_var, beta, gamma, epsilon)

        if isinstance(is_training, bool):  # a graph for inference only: no branch to choose at run time
            return train() if is_training else infer()
        return tf.cond(is_training, train, infer)


def conv2d(x, filters, size, scope, weight_decay=0.0, is_training=None, relu=True):
    """x (N, H, W, C) -> (N, H, W, filters): 'SAME' conv, then batch norm if is_training is given, then ReLU."""
    with tf.variable_scope(scope):
        w = _weights([size, size, x.shape[-1], filters], weight_decay)
        y = tf.nn.conv2d(x, w, strides=1, padding="SAME")
        y = batch_norm(y, is_training) if is_training is not None else tf.nn.bias_add(y, _biases(filters))
        return tf.nn.relu(y) if relu else y


def dense(x, units, scope, weight_decay=0.0, relu=False):
    """x (N, D) -> (N, units)."""
    with tf.variable_scope(scope):
        w = _weights([x.shape[-1], units], weight_decay, 2.0 if relu else 1.0)
        y = tf.matmul(x, w) + _biases(units)
        return tf.nn.relu(y) if relu else y


def max_pool(x, size=2, stride=2):
    return tf.nn.max_pool2d(x, size, stride, padding="SAME")


def substream(seed, k):
    """The k-th (0..63) independent stateless seed derived from seed, an int64 (2,) tensor
    (run seed, step): (run seed x 64 + k, step), so streams never meet across steps or uses."""
    return seed * tf.constant([64, 1], tf.int64) + tf.constant([k, 0], tf.int64)


def dropout(x, rate, is_training, seed=None):
    """Dropout at `rate` while training, identity otherwise (is_training: bool tensor or Python bool).

    seed: None, or an int64 (2,) tensor that makes the mask a function of it alone (stateless), so
    that a resumed run draws the same masks at the same step as an uninterrupted one.
    """
    if not rate or is_training is False:
        return x
    if seed is None:
        return tf.nn.dropout(x, rate=tf.where(is_training, rate, 0.0))
    keep = tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=seed) >= rate, x.dtype) / (1.0 - rate)
    return tf.where(is_training, x * keep, x)


def attention(features, units, scope):
    """Additive attention with a learned query.

    features (N, T, D) -> (weights (N, T), summing to 1 over T).
    score_t = q . tanh(W f_t + b): the correlation of each (projected) feature
    with the learned query vector q, then a softmax over the T positions.
    """
    with tf.variable_scope(scope):
        d = features.shape[-1]
        w = tf.get_variable("weights", [d, units], initializer=tf.glorot_uniform_initializer())
        b = tf.get_variable("biases", [units], initializer=tf.zeros_initializer())
        q = tf.get_variable("query", [units], initializer=tf.glorot_uniform_initializer())
        # (N*T, D) matmuls with constant reshapes: tf.tensordot would reshape through run-time
        # shape arithmetic, which costs ops in every graph and splits an exported TFLite graph.
        steps = features.shape[1]
        keys = tf.tanh(tf.matmul(tf.reshape(features, [-1, d]), w) + b)      # (N*T, units)
        scores = tf.reshape(tf.matmul(keys, q[:, None]), [-1, steps])        # (N, T)
        return tf.nn.softmax(scores, axis=-1)


def lstm(sequence, units, scope, weight_decay=0.0, is_training=None):
    """A single-layer LSTM, unrolled over the (static) time axis.

    sequence (N, T, D) -> hidden states (N, T, units).
    is_training: Python False for a graph that only infers (see below); anything else
    (a bool tensor, or None) for one that may train.  The values are the same either way.
    Gates = [x_t, h_{t-1}] W + b, with W stored as one (D + units, 4 units) matrix;
    the forget-gate bias starts at 1 so that early in training the cell remembers
    rather than forgets.
    """
    with tf.variable_scope(scope):
        steps, n_in = sequence.shape[1], sequence.shape[-1]
        w = _weights([n_in + units, 4 * units], weight_decay, 1.0)
        b = tf.get_variable("biases", [4 * units],
                            initializer=tf.constant_initializer([0.0] * units + [1.0] * units + [0.0] * 2 * units))
        # The input half of the product for all T steps in one matmul; only h_{t-1} W_h is left
        # inside the loop.  Same sums as one matmul of [x_t, h_{t-1}], in fewer, larger ops.
        # Kept 2-D (N, T * 4 units) and cut with plain slices, and the states joined by one concat:
        # ops that TFLite's XNNPACK kernels take whole (a squeezing slice or a stack would each
        # fall back to a slower kernel and cut the exported graph in pieces).
        inputs = tf.reshape(tf.matmul(tf.reshape(sequence, [-1, n_in]), w[:n_in]) + b, [-1, steps * 4 * units])
        if is_training is False:
            xs = [inputs[:, 4 * units * t:4 * units * (t + 1)] for t in range(steps)]
        else:
            # A graph that trains cuts with one split instead: the gradient of each slice is a
            # zero tensor of the whole input's size (T of them, then summed), that of a split one
            # concat (docs/speed.md: the training step's time).  TFLite's XNNPACK takes a split of
            # at most 4 outputs, hence the slices above where nothing trains.
            xs = tf.split(inputs, steps, axis=1)
        w_h = w[n_in:]
        h = c = None  # the state starts at zero: step 0 has no h W_h term and no f * c term
        states = []
        for x_t in xs:
            gates = x_t if h is None else x_t + tf.matmul(h, w_h)
            i, f, g, o = tf.split(gates, 4, axis=1)
            c = tf.sigmoid(i) * tf.tanh(g) if c is None else tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            states.append(h)
        return tf.reshape(tf.concat(states, axis=1), [-1, steps, units])
