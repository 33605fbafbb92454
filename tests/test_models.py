"""The model graphs, in the TF-Slim manner: shapes, variable sets, attention, learning, save/restore."""
import numpy as np
import pytest

from ferkit import models
from ferkit.models import layers
from conftest import balanced_labels, synthetic_faces
from ferkit import checkpoints, files
from ferkit.faces import to_model_input
from ferkit.cli import quiet_tensorflow

tf = quiet_tensorflow()  # graph mode, before any model is built

ACNN_PARTS = {"cnn", "local_attention", "lstm", "global_attention", "logits"}


def build(name, **hparams):
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        net = checkpoints.build({"model": name, "hparams": {**models.default_hparams(name), **hparams}})
    return graph, net


def scopes(net):
    return {v.op.name.split("/")[0] for v in net.model_variables}


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_logit_shapes(name):
    graph, net = build(name)
    with tf.Session(graph=graph) as s:
        s.run(tf.variables_initializer(net.model_variables))
        logits = s.run(net.logits, {net.images: to_model_input(synthetic_faces(balanced_labels(1)))})
    assert logits.shape == (7, 7) and np.isfinite(logits).all()


def test_variable_scopes():
    assert scopes(build("acnn_alstm")[1]) == ACNN_PARTS
    assert scopes(build("cnn_alstm")[1]) == ACNN_PARTS - {"local_attention"}
    assert scopes(build("cnn_lstm")[1]) == ACNN_PARTS - {"local_attention", "global_attention"}
    assert scopes(build("dnn")[1]) == {"conv1", "conv2", "dense1", "dense2", "logits"}


def test_variable_names_are_exactly_these():
    """The exact set, as TF-Slim's net tests check theirs: a renamed or added variable breaks
    every shipped checkpoint, so it must show here first."""
    conv = {f"cnn/conv{i}/{v}" for i in range(1, 9) for v in ("weights", "bn/beta", "bn/gamma", "bn/moving_mean",
                                                                "bn/moving_variance")}
    attention = {f"{part}/{v}" for part in ("local_attention", "global_attention") for v in ("weights", "biases", "query")}
    rest = {"lstm/weights", "lstm/biases", "logits/weights", "logits/biases"}
    assert {v.op.name for v in build("acnn_alstm")[1].model_variables} == conv | attention | rest
    assert {v.op.name for v in build("cnn_alstm")[1].model_variables} == conv | rest | {
        f"global_attention/{v}" for v in ("weights", "biases", "query")}
    assert {v.op.name for v in build("cnn_lstm")[1].model_variables} == conv | rest
    assert {v.op.name for v in build("dnn")[1].model_variables} == {
        f"{layer}/{v}" for layer in ("conv1", "conv2", "dense1", "dense2", "logits") for v in ("weights", "biases")}


def test_dnn_layer_shapes():
    shapes = {v.op.name: v.shape.as_list() for v in build("dnn")[1].model_variables}
    assert shapes["conv1/weights"] == [5, 5, 1, 64] and shapes["conv2/weights"] == [3, 3, 64, 64]
    assert shapes["dense1/weights"] == [12 * 12 * 64, 384] and shapes["dense2/weights"] == [384, 192]
    assert shapes["logits/weights"] == [192, 7]


def test_attention_weights_are_distributions():
    graph, net = build("acnn_alstm")
    with tf.Session(graph=graph) as s:
        s.run(tf.variables_initializer(net.model_variables))
        local, glob = s.run([net.end_points["local_attention"], net.end_points["global_attention"]],
                            {net.images: to_model_input(synthetic_faces(balanced_labels(2)))})
    for weights in (local, glob):
        assert weights.shape == (14, 36)  # the 6x6 grid: a real sequence, not length one
        assert (weights >= 0).all()
        np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-5)
    assert net.end_points["lstm_states"].shape.as_list() == [None, 36, 128]


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'resnet'; known models: dnn, acnn_alstm, cnn_lstm, cnn_alstm"):
        models.get("resnet")


@pytest.mark.parametrize("name", ["dnn", "acnn_alstm"])
def test_training_steps_lower_the_loss(name):
    graph, net = build(name, dropout=0.0)
    labels = balanced_labels(4)
    feed = {net.images: to_model_input(synthetic_faces(labels)), net.labels: labels, net.is_training: True}
    with graph.as_default():
        total, cross_entropy = models.loss(net.logits, net.labels)
        train_op = tf.train.AdamOptimizer(1e-3).minimize(total)
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            first = s.run(cross_entropy, feed)
            for _ in range(15):
                s.run(train_op, feed)
            last = s.run(cross_entropy, feed)
    assert last < 0.7 * first


def test_save_restore_gives_identical_logits(tmp_path):
    faces = synthetic_faces(balanced_labels(2))
    graph, net = build("acnn_alstm")
    with graph.as_default(), tf.Session() as s:
        s.run(tf.global_variables_initializer())
        # a training step moves the batch-norm averages away from their initial values
        s.run(net.logits, {net.images: to_model_input(faces), net.is_training: True})
        before = s.run(net.logits, {net.images: to_model_input(faces)})
        tf.train.Saver(net.model_variables).save(s, str(tmp_path / "best" / "model.ckpt"))
    files.write_json(tmp_path / "config.json", {"model": "acnn_alstm", "hparams": models.default_hparams("acnn_alstm")})
    classifier = checkpoints.Classifier(str(tmp_path))
    after = classifier.predict(faces)
    np.testing.assert_allclose(after, np.exp(before) / np.exp(before).sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hparams, convs", [
    # 48x48: 16 then 32 wide; 24x24: 64-64; 12x12 and 6x6: a conv, then a residual block of two.
    ({"first_width": 16, "residual_stages": 2},
     [[3, 3, 1, 16], [3, 3, 16, 32], [3, 3, 32, 64], [3, 3, 64, 64], [3, 3, 64, 128], [3, 3, 128, 128],
      [3, 3, 128, 128], [3, 3, 128, 256], [3, 3, 256, 256], [3, 3, 256, 256]]),
    # The cheaper stem at 44x44: conv1 alone, then pooled; the later stages as always, numbered on from conv2.
    ({"stem_convs": 1, "crop": 44},
     [[3, 3, 1, 32], [3, 3, 32, 64], [3, 3, 64, 64], [3, 3, 64, 128], [3, 3, 128, 128], [3, 3, 128, 256],
      [3, 3, 256, 256]]),
])
def test_acnn_alstm_cnn_shape_hyperparameters_give_their_layers(hparams, convs):
    graph, net = build("acnn_alstm", **hparams)
    shapes = {v.op.name: v.shape.as_list() for v in net.model_variables if v.op.name.endswith("/weights")}
    assert {name: shape for name, shape in shapes.items() if name.startswith("cnn/")} == {
        f"cnn/conv{i}/weights": shape for i, shape in enumerate(convs, 1)}
    assert net.end_points["local_features"].shape.as_list() == [None, 36, 256]
    assert net.logits.shape.as_list() == [None, 7]


def test_residual_block_adds_its_input_back():
    graph, net = build("acnn_alstm", residual_stages=1)   # the 6x6 stage: conv7, then conv8 + conv9
    feed = {net.images: to_model_input(synthetic_faces(balanced_labels(1)))}
    block_input = graph.get_tensor_by_name("cnn/conv7/Relu:0")
    block_output = graph.get_tensor_by_name("cnn/Relu:0")
    with graph.as_default(), tf.Session() as s:
        s.run(tf.variables_initializer(net.model_variables))
        x, y = s.run([block_input, block_output], feed)
        assert not np.allclose(x, y)
        # With the second conv's batch-norm scale and shift at zero the branch adds nothing:
        # the block passes its (non-negative) input through unchanged.
        for name in ("gamma", "beta"):
            variable, = [v for v in net.model_variables if v.op.name == f"cnn/conv9/bn/{name}"]
            s.run(variable.assign(tf.zeros_like(variable)))
        x, y = s.run([block_input, block_output], feed)
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("hparams, message", [
    ({"residual_stages": 5}, "residual_stages=5: must be a whole number from 0 to 4"),
    ({"residual_stages": -1}, "residual_stages=-1: must be a whole number from 0 to 4"),
    ({"first_width": 0}, "first_width=0: must be a whole number from 1 to 1024"),
    ({"crop": 7}, "crop=7: must be a whole number from 8 to 48"),
    ({"crop": 49}, "crop=49: must be a whole number from 8 to 48"),
    ({"stem_convs": 3}, "stem_convs=3: must be a whole number from 1 to 2"),
])
def test_cnn_shape_hyperparameters_are_range_checked(hparams, message):
    models.check_hparams("acnn_alstm", {**models.default_hparams("acnn_alstm"), "residual_stages": 0})
    with pytest.raises(ValueError, match=message):
        models.check_hparams("acnn_alstm", {**models.default_hparams("acnn_alstm"), **hparams})


def test_crop_reads_the_central_square_only():
    """crop=44: the convs run at 44x44, the grid is still 6x6 (36 LSTM steps), and the 2-pixel border
    is ignored (changing it leaves the logits as they are) while the central square is not."""
    graph, net = build("acnn_alstm", crop=44)
    assert net.end_points["local_features"].shape.as_list() == [None, 36, 256]
    assert graph.get_tensor_by_name("cnn/conv1/Relu:0").shape.as_list() == [None, 44, 44, 32]
    faces = to_model_input(synthetic_faces(balanced_labels(1)))
    border, centre = faces.copy(), faces.copy()
    border[:, :2] = border[:, -2:] = border[:, :, :2] = border[:, :, -2:] = 1.0
    centre[:, 2:46, 2:46] = 1.0
    with graph.as_default(), tf.Session() as s:
        s.run(tf.variables_initializer(net.model_variables))
        logits = [s.run(net.logits, {net.images: x}) for x in (faces, border, centre)]
    np.testing.assert_array_equal(logits[0], logits[1])
    assert not np.allclose(logits[0], logits[2])


def test_configs_older_than_a_hyperparameter_read_as_its_default(tmp_path):
    old = {k: v for k, v in models.default_hparams("acnn_alstm").items() if k not in ("first_width", "residual_stages", "stem_convs", "crop")}
    files.write_json(tmp_path / "config.json", {"model": "acnn_alstm", "hparams": old})
    hparams = checkpoints.read_config(str(tmp_path))["hparams"]
    assert hparams == models.default_hparams("acnn_alstm")
    assert (hparams["first_width"], hparams["residual_stages"], hparams["stem_convs"], hparams["crop"]) == (32, 0, 2, 48)


def test_lstm_cuts_its_steps_with_one_split_to_train_and_slices_to_export():
    """The graph that trains cuts the 36 steps with one split, whose gradient is one concat (a slice's
    is a zero tensor of the whole input's size, 36 of them); the inference-only graph keeps slices,
    since TFLite's XNNPACK takes no split over 4 ways.  That both give the same logits is
    test_save_restore_gives_identical_logits (a trainable graph against Classifier's)."""
    graph = tf.Graph()
    with graph.as_default():
        sequence = tf.placeholder(tf.float32, [None, 36, 16])
        training = layers.lstm(sequence, 8, "lstm", is_training=tf.constant(True))
        with tf.variable_scope(tf.get_variable_scope(), reuse=True):
            inference = layers.lstm(sequence, 8, "lstm", is_training=False)
        for states in (training, inference):
            tf.gradients(tf.reduce_sum(states), sequence)
    ops = graph.get_operations()
    training_ops = [op for op in ops if op.name.startswith("gradients/")]
    assert training_ops and not any(op.type == "StridedSliceGrad" for op in training_ops)
    assert sum(op.type == "StridedSliceGrad" for op in ops) == 36        # the inference graph's, for comparison
    assert max(len(op.outputs) for op in ops if op.name.startswith("lstm_1/") and op.type == "Split") == 4
