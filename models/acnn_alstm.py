"""ACNN-ALSTM (Ye, Hu and Liu, Computational Intelligence and Neuroscience 2022, 7450637) and its ablations.

  logits, end_points = inference(images, is_training, local_attention=True, global_attention=True, ...)

images: float32 (N, 48, 48, 1) from ferkit.faces.to_model_input; logits (N, 7).
The five parts, each in its own variable scope:
  (crop)            with crop < 48, the network sees only the central crop x crop
                    pixels of the face: training's random shifts (ferkit.augment)
                    then make it a random crop, and test-time shifted views a
                    multi-crop average, the same crop size in both (no variables)
  cnn               8 conv layers (32-32, 64-64, 128-128, 256-256, batch norm,
                    ReLU, max-pool after the first three pairs) -> a 6x6 grid
                    of 36 local feature vectors (N, 36, 256).  Three hyperparameters
                    reshape it (their defaults give the layers above):
                    first_width, the width of conv1; width48, of the second 48x48 conv;
                    width24, of the two 24x24 convs (32, 32 and 64 by default);
                    residual_stages, how many of the last stages get a residual
                    block (two more convs, added back onto the stage's first conv)
                    in place of their second conv;
                    stem_convs (1-2), the convs at full resolution: 1 drops the
                    second 48x48 conv (the costliest layer, 21 M of the 117 M
                    multiply-adds), so the face is pooled after one conv.
  local_attention   one score per local feature from its correlation with a
                    learned query, softmax over the 36 positions; features are
                    reweighted by 36 * weight (mean weight 1, so their scale is kept)
  lstm              an LSTM reading the 36 local features in row-major order
  global_attention  scores of the 36 hidden states against a learned query,
                    softmax over time, context = weighted sum of hidden states
  logits            dropout, then a linear layer on the context
The ablations drop attention layers: cnn_alstm has global attention only,
cnn_lstm has neither and classifies the LSTM's last hidden state.
end_points: 'local_features' (N, 36, 256), 'lstm_states' (N, 36, lstm_units),
and, where present, 'local_attention' and 'global_attention' weights (N, 36).
"""
from . import layers
from .layers import tf

CNN_BLOCKS = ((32, 32), (64, 64), (128, 128), (256, 256))
# models.check_hparams: the integers' ranges.  The widths stop where one model still trains in this
# machine's memory (first_width=100000 asked the OS for more than it had, and it killed the process).
INT_RANGES = {"residual_stages": (0, len(CNN_BLOCKS)), "crop": (8, 48), "stem_convs": (1, 2),
              "first_width": (1, 1024), "width48": (1, 1024), "width24": (1, 1024), "lstm_units": (1, 4096),
              "attention_units": (1, 4096)}


def cnn(x, is_training, weight_decay, first_width=32, residual_stages=0, stem_convs=2, width48=32, width24=64):
    """The convolutional part: images (N, 48, 48, 1) -> feature grid (N, 6, 6, 256).

    Convs are numbered conv1, conv2, ... in order, so the default (a plain
    VGG-style stack) keeps the variable names of checkpoints made before the
    hyperparameters existed.
    """
    n = 0

    def conv(x, width, relu=True):
        nonlocal n
        n += 1
        return layers.conv2d(x, width, 3, f"conv{n}", weight_decay, is_training, relu=relu)

    blocks = ((first_width, width48), (width24, width24)) + CNN_BLOCKS[2:]
    for stage, widths in enumerate(blocks):
        x = conv(x, widths[0])
        if stage == 0 and stem_convs == 1:
            pass                                        # the cheaper stem: one conv, then pool
        elif stage >= len(CNN_BLOCKS) - residual_stages:
            # A basic residual block at the stage's width: relu(x + bn(conv(relu(bn(conv(x)))))).
            x = tf.nn.relu(x + conv(conv(x, widths[1]), widths[1], relu=False))
        else:
            x = conv(x, widths[1])
        if stage < len(CNN_BLOCKS) - 1:
            x = layers.max_pool(x)                      # 48 -> 24 -> 12 -> 6
    return x


def inference(images, is_training, num_classes=7, local_attention=True, global_attention=True,
              lstm_units=128, attention_units=128, dropout=0.3, weight_decay=5e-4,
              first_width=32, residual_stages=0, stem_convs=2, crop=48, width48=32, width24=64, seed=None):
    """images (N, 48, 48, 1), is_training bool tensor -> logits (N, num_classes), end_points dict.
    crop: the side of the central square the network reads (48: the whole face); any crop from
    41 to 48 still pools down to the 6x6 grid (SAME pooling rounds up), so the LSTM keeps 36 steps.
    seed: None or an int64 (2,) tensor for stateless dropout (layers.dropout)."""
    end_points = {}
    if crop < images.shape[1]:
        # A static slice, the same in training and inference graphs: the randomness of a random
        # crop comes from the augmentation's shifts, applied to the whole face before this.
        top = (int(images.shape[1]) - crop) // 2
        images = images[:, top:top + crop, top:top + crop]
    with tf.variable_scope("cnn"):
        x = cnn(images, is_training, weight_decay, first_width, residual_stages, stem_convs, width48, width24)
    grid = x.shape[1] * x.shape[2]
    local = tf.reshape(x, [-1, grid, x.shape[3]])           # (N, 36, 256), row-major grid positions
    end_points["local_features"] = local

    if local_attention:
        weights = layers.attention(local, attention_units, "local_attention")
        end_points["local_attention"] = weights
        local = local * (float(grid) * weights)[..., None]

    states = layers.lstm(local, lstm_units, "lstm", weight_decay, is_training)   # (N, 36, lstm_units)
    end_points["lstm_states"] = states

    if global_attention:
        weights = layers.attention(states, attention_units, "global_attention")
        end_points["global_attention"] = weights
        summary = tf.reduce_sum(states * weights[..., None], axis=1)
    else:
        summary = states[:, -1]
    logits = layers.dense(layers.dropout(summary, dropout, is_training,
                                                None if seed is None else layers.substream(seed, 32)), num_classes, "logits")
    return logits, end_points
