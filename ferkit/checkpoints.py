"""What train.py saves beside its weights, and how a checkpoint is restored (ferkit.backends.load
chooses between this and the exported forms).

A checkpoint folder holds
  config.json     {"model", "hparams", "settings"}: enough to rebuild the graph
  best/           Saver checkpoint of the model variables with the best PublicTest accuracy
  last/           Saver checkpoint of everything (optimizer state too), for resuming
  state.json      training progress (epoch, best accuracy) at the last finished epoch
  log.csv, curves.png, events.out.tfevents.*   per-epoch log, plot and TensorBoard summaries

  graph = build(config, augmentation=False)           placeholders + inference, in the current graph
  path = restore(session, variables, folder)          best/ (else last/) weights into the variables
  classifier = Classifier(folder)                     restored model; .predict(faces) -> probabilities
"""
import os
from types import SimpleNamespace

from ferkit import models
from ferkit.batched import BatchedModel
from ferkit.cli import UserError, quiet_tensorflow, read_json, require_regular
from ferkit.files import atomic_write
from ferkit.dataset import IMAGE_SIZE, normalise
from ferkit.faces import to_model_input

# TensorFlow is imported by the functions that need it (quiet_tensorflow), not here: finding a
# checkpoint folder (read_config's first check, latest) must not wait seconds for it.

CONFIG = "config.json"


def read_config(folder):
    path = os.path.join(folder, CONFIG)
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file; {folder} is not a checkpoint folder written by train.py "
                        "(train one with: python train.py --arch NAME)")
    quiet_tensorflow()  # the model's defaults come from its module, which imports TensorFlow
    try:
        config = read_json(path)
        if not (isinstance(config, dict) and isinstance(config.get("hparams"), dict)
                and isinstance(config.get("settings", {}), dict) and isinstance(config.get("model"), str)):
            raise ValueError("expected an object with a model name and objects 'hparams' and 'settings'")
        # Hyperparameters added since the folder was written take their defaults, which are
        # what it was built with (models/ gives each new one a default that keeps the old network).
        config["hparams"] = {**models.default_hparams(config["model"]), **config["hparams"]}
        models.check_hparams(config["model"], config["hparams"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: not a valid checkpoint config ({e}); was it edited? "
                        "train.py writes it, evaluate.py and predict.py read it") from None
    return config


def build(config, augmentation=False, trainable=True, uint8_faces=False):
    """Placeholders and the model of `config` in the default graph.

    Returns a namespace: images float32 (N, 48, 48, 1) placeholder, labels int32 (N,)
    placeholder, is_training (a bool placeholder, default False; Python False when
    not trainable) and augment bool placeholders (default False), step_seed (with
    augmentation: an int64 (2,) placeholder, (run seed, step), that makes augmentation and
    dropout stateless, so that a resumed run repeats an uninterrupted one exactly; else None),
    logits (N, 7), probabilities (N, 7), end_points, and model_variables
    (exactly the variables the model created, which is what best/ saves).
    uint8_faces=True (exported graphs): images is a uint8 placeholder named "faces" taking
    0..255, and to_model_input's normalisation is done inside the graph.
    """
    tf = quiet_tensorflow()
    from ferkit.augment import augment as augment_images
    if uint8_faces:
        images = tf.placeholder(tf.uint8, [None, IMAGE_SIZE, IMAGE_SIZE, 1], name="faces")
        inputs = normalise(tf.cast(images, tf.float32))
    else:
        images = inputs = tf.placeholder(tf.float32, [None, IMAGE_SIZE, IMAGE_SIZE, 1], name="images")
    labels = tf.placeholder(tf.int32, [None], name="labels")
    # Inference-only graphs get a Python False: no run-time branches, and batch norm folds into the convs.
    is_training = tf.placeholder_with_default(False, [], name="is_training") if trainable else False
    augment = tf.placeholder_with_default(False, [], name="augment")
    erase = config.get("settings", {}).get("erase", 0.0)   # train.py --erase
    step_seed = tf.placeholder_with_default(tf.zeros([2], tf.int64), [2], name="step_seed") if augmentation else None
    if augmentation:
        inputs = tf.cond(augment, lambda: augment_images(inputs, erase=erase, seed=step_seed), lambda: inputs)
    before = set(tf.global_variables())
    logits, end_points = models.inference(config["model"], inputs, is_training, seed=step_seed, **config["hparams"])
    model_variables = [v for v in tf.global_variables() if v not in before]
    return SimpleNamespace(images=images, labels=labels, is_training=is_training, augment=augment,
                           step_seed=step_seed, logits=logits, probabilities=tf.nn.softmax(logits, name="probabilities"),
                           end_points=end_points, model_variables=model_variables)


CHECKPOINT_PREFIX = "model.ckpt"


def latest(folder, which):
    """Path prefix of the committed checkpoint in folder/which (best or last), or None.

    Read from the folder's own index file by file name, never by the absolute path
    TensorFlow may have recorded, so a folder works wherever it is copied or moved.
    """
    sub = os.path.join(folder, which)
    try:
        with open(os.path.join(sub, "checkpoint")) as f:
            line = next((l for l in f if l.startswith("model_checkpoint_path:")), "")
    except OSError:
        return None
    name = os.path.basename(line.split(":", 1)[-1].strip().strip('"'))
    path = os.path.join(sub, name)
    return path if name and os.path.exists(path + ".index") else None


def checkpoint_files(folder, which, step):
    """Names of the files of folder/which/model.ckpt-STEP (index and data shards)."""
    sub, stem = os.path.join(folder, which), f"{CHECKPOINT_PREFIX}-{step}."
    return [n for n in os.listdir(sub) if n.startswith(stem)] if os.path.isdir(sub) else []


def point_index_at(folder, which, step):
    """Make folder/which/checkpoint name model.ckpt-STEP (relative, atomically), or remove it if step is None."""
    sub = os.path.join(folder, which)
    path = os.path.join(sub, "checkpoint")
    if step is None:
        if os.path.exists(path):
            os.remove(path)
        return
    os.makedirs(sub, exist_ok=True)
    name = f"{CHECKPOINT_PREFIX}-{step}"
    with atomic_write(path) as f:
        f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')


def halve(folder):
    """Rewrite a finished folder's best/ float tensors as float16 (tools/halve_checkpoint.py, the release
    step); returns (bytes before, bytes after).  restore() widens them back to float32."""
    return rewrite(folder, lambda values: {n: v.astype("float16") if v.dtype.kind == "f" else v
                                           for n, v in values.items()})


def finished_best(folder):
    """best/'s checkpoint prefix of a finished training folder (state.json says finished, or there is no
    last/ to resume from); UserError otherwise."""
    read_config(folder)
    state = os.path.join(folder, "state.json")
    if os.path.isdir(os.path.join(folder, "last")) and os.listdir(os.path.join(folder, "last")):
        if not (os.path.exists(state) and read_json(state).get("finished")):
            raise UserError(f"{folder}: training has not finished (last/ holds a resumable state); "
                            "only a finished model's weights are rewritten")
    path = latest(folder, "best")
    if path is None:
        raise UserError(f"{folder}: no weights in best/")
    return path


def rewrite(folder, change):
    """Replace a finished folder's best/ weights with change({name: array}) -> {name: array}: written
    beside them, then renamed over them data shards first and the index last.  A kill before the
    renames leaves the old weights; in the microseconds between them, a mix that the index's
    checksums refuse as damaged.  Returns (bytes before, bytes after)."""
    import shutil
    import tempfile
    tf = quiet_tensorflow()
    path = finished_best(folder)
    stored = tf.train.load_checkpoint(path)
    values = change({name: stored.get_tensor(name) for name in stored.get_variable_to_shape_map()})
    sub, stem = os.path.dirname(path), os.path.basename(path)
    before = sum(os.path.getsize(os.path.join(sub, n)) for n in os.listdir(sub) if n.startswith(stem + "."))
    work = tempfile.mkdtemp(dir=sub, prefix=".rewrite-")
    try:
        with tf.Graph().as_default():
            variables = [tf.Variable(v, name=n) for n, v in values.items()]
            with tf.Session() as session:
                session.run(tf.global_variables_initializer())
                tf.train.Saver(variables).save(session, os.path.join(work, stem), write_meta_graph=False, write_state=False)
        names = sorted(os.listdir(work), key=lambda n: n.endswith(".index"))  # data shards first, index last
        for name in names:
            os.replace(os.path.join(work, name), os.path.join(sub, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    after = sum(os.path.getsize(os.path.join(sub, n)) for n in os.listdir(sub) if n.startswith(stem + "."))
    return before, after


def cpu_has_bfloat16():
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX), where oneDNN runs it at about 1.6x float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def session_config(bfloat16):
    """Session options; bfloat16=True lets Grappler run convolutions and matmuls in bfloat16 through oneDNN."""
    tf = quiet_tensorflow()
    config = tf.ConfigProto()
    if bfloat16:
        from tensorflow.core.protobuf import rewriter_config_pb2
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    return config


def _reason(error):
    """The line of a TensorFlow error message that says what went wrong (not where in the graph)."""
    lines = [l.strip() for l in str(getattr(error, "message", error)).splitlines() if l.strip()]
    skip = ("Graph execution error", "Detected at node", "File ", "Node:", "[[")
    return next((l for l in reversed(lines) if not l.startswith(skip)), lines[0] if lines else "unknown error")[:200]


def restore(session, variables, folder, which="best"):
    """Load folder/which's committed weights (else last/'s) into `variables`; returns the checkpoint path.

    Weights stored as float16 (the shipped checkpoints, see tools/halve_checkpoint.py) are
    widened to the variables' float32.  Each way a folder can be unusable (no weights, missing
    or damaged weights file, weights of another model) is a UserError saying which.
    """
    tf = quiet_tensorflow()
    path = latest(folder, which) or latest(folder, "last")
    if path is None:
        raise UserError(f"{folder}: no saved weights in {which}/ or last/; has training run yet?")
    if which != "last" and not latest(folder, which):  # a short run with no scored epoch yet: say so
        import sys
        print(f"note: {folder} has no {which}/ weights yet; using last/ ({os.path.basename(path)})", file=sys.stderr)
    shards = [n for n in os.listdir(os.path.dirname(path)) if n.startswith(os.path.basename(path) + ".data-")]
    for name in shards + [os.path.basename(path) + ".index"]:  # a FIFO among them would block TensorFlow's read
        require_regular(os.path.join(os.path.dirname(path), name), "checkpoint file")
    if not shards:
        raise UserError(f"{path}: the weights file ({os.path.basename(path)}.data-*) is missing; "
                        "copy the whole checkpoint folder again, or train again")
    try:
        stored = tf.train.load_checkpoint(path)
        dtypes = stored.get_variable_to_dtype_map()
        if tf.float16 not in dtypes.values():
            tf.train.Saver(variables).restore(session, path)
        for v in variables if tf.float16 in dtypes.values() else ():
            name = v.op.name
            if name not in dtypes:
                raise tf.errors.NotFoundError(None, None, f"Key {name} not found in checkpoint")
            value = stored.get_tensor(name)
            if tuple(value.shape) != tuple(v.shape):
                raise tf.errors.InvalidArgumentError(None, None, f"{name}: shape {value.shape} in the checkpoint, "
                                                                 f"{tuple(v.shape)} in the model")
            v.load(value.astype(v.dtype.as_numpy_dtype), session)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
        raise UserError(f"{path}: the weights do not match {CONFIG}'s model ({_reason(e)}); "
                        f"was {CONFIG} edited, or copied from another folder?") from None
    except (tf.errors.OpError, ValueError, IndexError) as e:
        # DataLoss, OutOfRange, and the plain OpError of the checkpoint reader (float16 weights are
        # read through it): a truncated or flipped weights file, a junk index.
        raise UserError(f"{path}: the weights file is damaged or incomplete ({_reason(e)}); "
                        "copy the checkpoint folder again, or train again") from None
    return path


class Classifier(BatchedModel):
    """A trained model restored from a checkpoint folder, in a graph and session of its own.

    predict(faces uint8 (N, 48, 48, 1)) -> probabilities float32 (N, 7)
    predict(faces, extra=("local_attention",)) -> probabilities, {name: array}
    predict(faces, tta=True) -> probabilities averaged over test-time augmented views
    bfloat16=True: faster inference on CPUs with bfloat16 instructions, probabilities
    within about 1e-3 of float32 (evaluate.py --bf16 reports both ways).
    """

    backend = "checkpoint"
    quantize = None

    def __init__(self, folder, which="best", bfloat16=False):
        self.folder = folder
        self.bfloat16 = bfloat16 and cpu_has_bfloat16()
        self.config = read_config(folder)
        self.name = self.config["model"]
        tf = quiet_tensorflow()
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.tensors = build(self.config, trainable=False)
            self.session = tf.Session(graph=self.graph, config=session_config(self.bfloat16))
            self.path = restore(self.session, self.tensors.model_variables, folder, which)
        self.graph.finalize()
        self.extras = tuple(self.tensors.end_points)
        self.shapes = {"probabilities": tuple(self.tensors.probabilities.shape[1:]),
                       **{k: tuple(t.shape[1:]) for k, t in self.tensors.end_points.items()}}

    def _run(self, faces, names):
        fetches = {k: self.tensors.probabilities if k == "probabilities" else self.tensors.end_points[k] for k in names}
        return self.session.run(fetches, {self.tensors.images: to_model_input(faces)})

    def close(self):
        self.session.close()
