"""A training run's settings, typed: each option's default, range and help are defined once, here.

  parser = cli.ArgumentParser(doc); add_options(parser)      one --flag per field of TrainSettings
  settings = from_args(parser, args)                         validated (one-line errors) before anything is written
  settings.to_json()                                         config.json's "settings"
  TrainSettings.from_json(config["settings"])                older folders: fields added since take their default
  settings.changed_from(old_json)                            the schedule fields a resume would change

train.py records this in config.json beside the model's name and hyperparameters, and a folder
refuses to resume with other schedule fields (those that change what the run computes).
"""
import dataclasses
import json
from dataclasses import dataclass, field

from ferkit.backends import DEFAULT_MODEL
from ferkit.dataset import CACHE

# Peak learning rates: Adam's usual 1e-3; SGD's 0.1 at batch 128 for batch-normalised
# CNNs, scaled to our batch of 64.
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05}
LABELS = ("fer2013", "ferplus", "both")


def _finite(x):
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def option(default, help, valid=None, rule=None, schedule=True, choices=None, metavar=None):
    """A field of TrainSettings: its default, its --help, what values are valid (valid(x) -> bool,
    described by rule: "--NAME must be RULE, got X"), and whether resuming must keep it (schedule)."""
    return field(default=default, metadata={"help": help, "valid": valid, "rule": rule, "schedule": schedule,
                                            "choices": choices, "metavar": metavar})


# How a collection's images become faces (ferkit.collection.FaceReader): found and aligned as predict
# does (detect), taken whole (as-is), or detected in all but 48x48 crops (auto).
FACES = ("auto", "detect", "as-is")

# --init-from's defaults (fine-tuning a trained model), where the command line gives none of its own.
# lr chosen on validation people (docs/model_card.md, the Yale faces): 3e-4 0.972, 1e-4 0.889, 1e-3 0.861.
FINE_TUNING = {"lr": 3e-4, "epochs": 30, "patience": 8, "warmup_epochs": 0.0, "batch_size": 16}


@dataclass
class TrainSettings:
    epochs: int = option(30, "epochs of the cosine schedule", lambda v: v >= 1, "at least 1")
    batch_size: int = option(64, "faces per step", lambda v: v >= 1, "at least 1")
    optimizer: str = option("adam", "Adam, or SGD with Nesterov momentum (--momentum)", choices=tuple(DEFAULT_LR))
    lr: float = option(None, "peak learning rate (default: 1e-3 for adam, 0.05 for sgd)",
                       lambda v: _finite(v) and 1e-10 <= v <= 1e4, "a positive number from 1e-10 to 1e4 (such as 1e-3)")
    momentum: float = option(0.9, "Nesterov momentum of --optimizer sgd", lambda v: _finite(v) and 0 <= v < 1,
                             "in [0, 1)")
    warmup_epochs: float = option(1.0, "linear warm-up before the cosine decay",
                                  lambda v: _finite(v) and v >= 0, "0 or more")
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy", lambda v: _finite(v) and 0 <= v < 1,
                                    "in [0, 1)")
    patience: int = option(10, "stop after this many epochs without a better PublicTest accuracy",
                           lambda v: v >= 1, "at least 1", schedule=False)
    seed: int = option(0, "seeds the weights, the batch order and the augmentation", lambda v: 0 <= v < 2 ** 32,
                       f"in 0..{2 ** 32 - 1}")
    data: str = option(CACHE, "preprocess cache or any FER-2013 download", schedule=False)
    label_map: str = option(None, "with --data a collection: its folder names that are not emotion names, such as "
                            "1=surprise,2=fear (synonyms such as anger or sadness, and contempt, need none)",
                            schedule=False, metavar="FOLDER=EMOTION,...")
    faces: str = option("auto", "with --data a collection: find the face in each photo (detect), take each image "
                        "whole (as-is), or detect in all but 48x48 crops (auto)", lambda v: v in FACES,
                        "one of " + ", ".join(FACES), schedule=False, choices=FACES)
    labels: str = option("fer2013", "train on FER-2013's labels, or on FER+'s vote shares over the 7 emotions (soft "
                         "targets), or on both (--fer2013-weight), choosing checkpoints on FER+'s PublicTest majority "
                         "labels for ferplus and both, which need a cache made with preprocess.py --ferplus",
                         choices=LABELS)
    fer2013_weight: float = option(None, "with --labels both, the targets are (1 - W) x FER+'s vote shares + W x the "
                                   "FER-2013 label (default: 0.3)", lambda v: _finite(v) and 0 < v < 1, "in (0, 1)",
                                   metavar="W")
    init_from: str = option(None, "start from the best weights of this checkpoint folder (same model and "
                            "hyperparameters) instead of random ones: fine-tuning", schedule=False, metavar="DIR")
    erase: float = option(0.0, "random erasing: blank one random rectangle (2-20%% of the face) of each training face "
                          "with probability P (0 is off)", lambda v: _finite(v) and 0 <= v <= 1,
                          "a probability in [0, 1]", metavar="P")
    mixup: float = option(0.0, "mixup: train on each face blended with another face of its batch, weight "
                          "max(u, 1 - u) with u ~ Beta(ALPHA, ALPHA), the targets blended alike (0 is off; 0.2 is "
                          "usual)", lambda v: _finite(v) and 0 <= v <= 10, "in [0, 10] (0 is off)", metavar="ALPHA")
    cutmix: float = option(0.0, "cutmix: paste a box of another face of the batch onto each face, at most half its "
                           "area (the share drawn as min(u, 1 - u), u ~ Beta(ALPHA, ALPHA)), the targets mixed by "
                           "area (0 is off; 1 is usual)", lambda v: _finite(v) and 0 <= v <= 10,
                           "in [0, 10] (0 is off)", metavar="ALPHA")
    teacher: str = option(None, "distillation: soft targets from tools/teacher_probs.py, mixed into the labels "
                          "(--distill); made from the same --data", metavar="NPZ")
    distill: float = option(None, "with --teacher, the targets are W x the teachers' probabilities + (1 - W) x the "
                            "label (default: 0.5)", lambda v: _finite(v) and 0 < v <= 1, "in (0, 1]", metavar="W")
    bf16: bool = option(False, "bfloat16 mixed precision: oneDNN runs the convolutions and matmuls of training in "
                        "bfloat16 (weights and optimizer state stay float32); on CPUs with AVX-512 BF16 or AMX")
    ema: float = option(0.0, "keep an exponential moving average of the weights (0.999 is usual): each epoch scores "
                        "it on PublicTest too, and it becomes best/ when it beats both the raw weights and the best "
                        "so far (0 is off)", lambda v: _finite(v) and 0 <= v < 1, "a decay in [0, 1) (0 is off)",
                        metavar="DECAY")
    refit: bool = option(False, "the final fit: train on Training + PublicTest with settings already chosen on "
                         "PublicTest; best/ is then the last epoch's weights (PublicTest, now trained on, is still "
                         "scored and logged, but chooses nothing) and --patience is ignored")
    # Not options: the number of Training faces and a hash of them and their labels, set once the data is
    # read, so that a resume on other data is refused (folders older than the hash compare the size alone).
    data_size: int = field(default=None, metadata={"schedule": True})
    data_fingerprint: str = field(default=None, metadata={"schedule": True})

    def __post_init__(self):
        # Defaults that depend on another option; a value given where it does not apply is a problem().
        if self.lr is None and self.optimizer in DEFAULT_LR:
            self.lr = DEFAULT_LR[self.optimizer]
        if self.distill is None and self.teacher:
            self.distill = 0.5
        if self.fer2013_weight is None and self.labels == "both":
            self.fer2013_weight = 0.3

    def problems(self):
        """One message per value out of its range or combination that cannot work; [] when all is well."""
        found = []
        for f in options():
            value, valid = getattr(self, f.name), f.metadata["valid"]
            if value is not None and valid is not None and not valid(value):
                found.append(f"{flag(f)} must be {f.metadata['rule']}, got {value}")
        if _finite(self.warmup_epochs) and _finite(self.epochs) and self.warmup_epochs > self.epochs:
            found.append(f"--warmup-epochs must be at most --epochs ({self.epochs}), got {self.warmup_epochs}: the "
                         "learning rate would never reach its peak")
        if self.distill is not None and not self.teacher:
            found.append("--distill weighs --teacher's probabilities; give --teacher NPZ too, or leave --distill out")
        if self.mixup and self.cutmix:
            found.append("--mixup and --cutmix each mix a face with another; give one of them")
        if self.fer2013_weight is not None and self.labels != "both":
            found.append("--fer2013-weight applies to --labels both; give --labels both, or leave it out")
        if self.teacher and self.labels != "fer2013":
            found.append("--teacher distils FER-2013 labels; it cannot be used with --labels ferplus or both, whose "
                         "targets are FER+'s votes")
        if self.refit and (self.teacher or self.ema):
            found.append("--refit takes neither --teacher (its probabilities cover Training only) nor --ema (the "
                         "last epoch's weights are the model)")
        return found

    def trained_on(self):
        """The splits whose faces this run trains on: Training, and PublicTest too with --refit."""
        return ("Training", "PublicTest") if self.refit else ("Training",)

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, recorded):
        """config.json's "settings" -> TrainSettings; fields it lacks (added since) take their defaults, and
        values older versions recorded as null where a field did not apply (distill without a teacher,
        fer2013_weight without --labels both) too."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in (recorded or {}).items() if k in known}
        if not values.get("teacher"):  # older versions recorded distill's default without a teacher
            values.pop("distill", None)
        if values.get("labels") != "both":
            values.pop("fer2013_weight", None)
        return cls(**values)

    def changed_from(self, recorded):
        """The schedule fields whose value differs from those of `recorded` (an older config.json's
        settings) -> [(name, old value)]."""
        old = TrainSettings.from_json(recorded)
        return [(f.name, getattr(old, f.name)) for f in dataclasses.fields(self)
                if f.metadata["schedule"] and getattr(old, f.name) != getattr(self, f.name)
                and not (f.name == "data_fingerprint" and old.data_fingerprint is None)]


@dataclasses.dataclass
class ServiceSettings:
    """What serve's options set (their defaults are these); every worker process builds its app from them."""
    model: str = DEFAULT_MODEL      # the shipped model answering when a request names none
    checkpoint: str = None          # or a model of the operator's (any form backends.load reads)
    detector: str = "yunet"
    min_score: float = None         # None: ferkit.detectors.MIN_SCORE
    token: str = None               # clients must send "Authorization: Bearer TOKEN"
    cors: tuple = ()                # origins allowed to call the API from their pages
    max_body: int = 20 << 20        # bytes
    body_timeout: float = 10.0      # seconds a body may stall between two chunks before it is dropped (408)
    queue: int = 32                 # requests waiting for (or in) the model thread, at most; more get 503

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


def options():
    """The fields that are command-line options (all but data_size and data_fingerprint)."""
    return [f for f in dataclasses.fields(TrainSettings) if "help" in f.metadata]


def flag(f):
    return "--" + f.name.replace("_", "-")


def add_options(parser, names=None):
    """One --flag per option of TrainSettings (or those of `names` alone: the modes that read a
    collection take --label-map and --faces from here), its help and default taken from the field."""
    for f in options():
        if names is not None and f.name not in names:
            continue
        meta, kwargs = f.metadata, {"dest": f.name}
        if f.type in (bool, "bool"):
            kwargs.update(action="store_true", help=meta["help"])
        else:
            kind = {"int": int, "float": float, "str": str}.get(f.type, f.type)
            kwargs.update(type=kind, default=f.default, choices=meta["choices"], metavar=meta["metavar"],
                          help=meta["help"] + (" (default: %(default)s)" if f.default is not None else ""))
        parser.add_argument(flag(f), **kwargs)


def from_args(parser, args):
    """The parsed options -> TrainSettings, or parser.error with the first problem (nothing written yet)."""
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in options()})
    problems = settings.problems()
    if problems:
        parser.error(problems[0])
    return settings
