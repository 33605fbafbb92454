"""A training run's folder: the one owner of what train.py writes and of how it is resumed.

  run = RunFolder(path, config, overwrite)    lock it, then refuse, resume or start afresh
  run.state                                   the committed state to resume from, or None
  run.path                                    where checkpoints go now (see --overwrite below)
  run.commit(state)                           state.json, then index files, log.csv and clean-up
  run.close()                                 release the lock

Layout: config.json (model, hparams, settings), best/ and last/ (Saver checkpoints),
state.json (epoch, steps, best accuracy, log rows), log.csv, curves.png, TensorBoard events.

state.json is the commit point of every save: it names the one best and one last checkpoint
and holds the log rows; files it does not name are leftovers of a killed run and are removed.
Weights are never removed because a state is missing: a folder with weights and no state.json
is refused, naming the file.

The folder is locked (fcntl.flock on .lock) while a run uses it: a second run is refused
with the holder's PID, and a killed holder's lock is simply free again.

--overwrite never deletes the old model before the new one exists: the new run trains in a
temporary folder beside it (files.temporary_name) and replaces the old folder, everything
derived from its weights included (model.tflite, reports, curves), only once its first best
checkpoint is committed.  Until then the old model is untouched; a killed run leaves it as it
was, and its temporary folder is removed by the next run.
"""
import contextlib
import csv
import fcntl
import json
import os
import shutil

from ferkit import backends, checkpoints, files
from ferkit.cli import UserError, read_json

LOCK = ".lock"
STATE = "state.json"
LOG = "log.csv"
LOG_FIELDS = ("epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s",
              "ema_val_accuracy")
# What train.py and evaluate.py write into a run folder: --overwrite replaces a folder holding only these.
OURS = ("best", "last", STATE, LOG, "curves.png", checkpoints.CONFIG, LOCK, backends.FAST_FILE)
OURS_PREFIXES = ("events.out.tfevents", "eval_", "model.eval_")


def step_of(path):
    """checkpoint path prefix .../model.ckpt-STEP -> STEP, or None."""
    return int(path.rsplit("-", 1)[1]) if path else None


def has_weights(folder):
    """Whether folder/best or folder/last holds committed weights: a checkpoint its index file names.
    (A killed run's first checkpoints, saved before any state.json, have no index file yet.)"""
    return any(checkpoints.latest(folder, which) for which in ("best", "last"))


# The type each field of state.json has when train.py wrote it (None: a step not taken yet).
_STATE_TYPES = {"epoch": (int,), "step": (int, type(None)), "best_step": (int, type(None)), "best_epoch": (int,),
                "best_accuracy": (int, float), "finished": (bool,), "log": (list,), "partial": (dict, type(None))}


def _check_state_types(state):
    """ValueError naming the first field of state.json whose value is of the wrong type or out of range."""
    for key, types in _STATE_TYPES.items():
        value = state.get(key)
        if key in state and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise ValueError(f"'{key}' is {json.dumps(value)[:40]}, not a {' or '.join(t.__name__ for t in types)}")
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"'{key}' is {value}, below 0")
    if not all(isinstance(row, dict) for row in state.get("log", [])):
        raise ValueError("'log' holds rows that are not objects")


def read_state(folder):
    """The committed training state of a folder, or None when it holds no training.

    Folders written before state.json named the checkpoints (the shipped ones) get the names
    from the index files.  A state.json that is not a JSON object, or is missing beside weights,
    is a UserError naming it: nothing is removed on a guess.
    """
    path = os.path.join(folder, STATE)
    if not os.path.exists(path):
        if has_weights(folder):
            raise UserError(f"{path}: missing, but {folder} holds weights (best/ or last/); nothing was changed. "
                            "Put state.json back, pass another --out, or --overwrite to replace the folder")
        return None
    try:
        state = read_json(path)
        if not isinstance(state, dict):
            raise ValueError(f"a JSON {type(state).__name__}, not an object")
        _check_state_types(state)
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: unreadable ({e}); nothing was changed. Move the folder away or pass another "
                        "--out") from None
    state.setdefault("best_step", step_of(checkpoints.latest(folder, "best")))
    state.setdefault("step", step_of(checkpoints.latest(folder, "last")))
    for which, key in (("best", "best_step"), ("last", "step")):
        # Every commit saves the weights before state.json names them, so a named checkpoint that is
        # missing means the state was put back or damaged: refuse, and delete nothing on that guess.
        names = checkpoints.checkpoint_files(folder, which, state[key]) if state[key] is not None else None
        if names is not None and not (any(n.endswith(".index") for n in names) and any(".data-" in n for n in names)):
            raise UserError(f"{path}: names {which}/{checkpoints.CHECKPOINT_PREFIX}-{state[key]}, which is not "
                            f"there (an older state.json put back, or a damaged folder); nothing was changed. Move "
                            "the folder away, or pass another --out")
    if "log" not in state and os.path.exists(os.path.join(folder, LOG)):
        with open(os.path.join(folder, LOG)) as f:
            state["log"] = list(csv.DictReader(f))[:state.get("epoch", 0)]
    return state


def is_finished(folder, state):
    """A folder holds a finished model when its training says so, or when it has best
    weights but nothing to resume from (the shipped models)."""
    if state and state.get("finished"):
        return True
    config_path = os.path.join(folder, checkpoints.CONFIG)
    if not os.path.exists(config_path) or not checkpoints.latest(folder, "best"):
        return False
    try:
        old = read_json(config_path)
    except ValueError as e:
        raise UserError(f"{config_path}: unreadable ({e}); nothing was changed. Move the folder away, pass another "
                        "--out, or --overwrite to replace it") from None
    done = state and state.get("epoch", 0) >= old.get("settings", {}).get("epochs", float("inf"))
    return bool(done or not checkpoints.latest(folder, "last"))


def write_log(folder, rows):
    """log.csv from the committed log rows (atomically); rows None keeps an existing log as it is."""
    path = os.path.join(folder, LOG)
    if rows is None and os.path.exists(path):
        return
    with files.atomic_write(path, newline="") as f:
        csv.writer(f).writerows([LOG_FIELDS] + [[r.get(k, "") for k in LOG_FIELDS] for r in rows or []])


def _lock(folder):
    """An exclusive flock on folder/.lock, held until the returned file is closed (or the process dies).
    The holder removes the file when it is done, so a lock is taken only once the file it locked is
    still the one at that path (else a run that opened it just before the removal could share it)."""
    path = os.path.join(folder, LOCK)
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(f"{folder}: another train.py (PID {holder}) is training into it; nothing was changed. "
                            "Wait for it to finish, or pass another --out") from None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class RunFolder:
    """See the module docstring.  changed_from(old settings dict) -> [(name, old value)]: the
    settings that differ from a folder's and forbid resuming it (TrainSettings.changed_from)."""

    def __init__(self, folder, config, overwrite, changed_from):
        if backends.is_shipped(folder):
            raise UserError(f"--out {folder}: is a shipped model, which training never writes into "
                            "(shipped models change only through tools/ship_exports.py); pass another "
                            "--out, such as checkpoints/NAME")
        from ferkit.cli import output_folder
        # First: a killed --overwrite's folder, set aside between two renames, goes back where it was.
        files.remove_stale_temporaries(os.path.dirname(os.path.abspath(folder)))
        output_folder(folder, "--out")
        self.folder, self.path, self._lock = folder, folder, _lock(folder)
        try:
            self.state = self._open(config, overwrite, changed_from)
        except BaseException:
            self.close()
            raise

    def _open(self, config, overwrite, changed_from):
        folder = self.folder
        if overwrite:  # whatever is there goes, once the new run has best weights: no need to read it
            used = any(os.path.exists(os.path.join(folder, n)) for n in (STATE, checkpoints.CONFIG, "best", "last"))
        else:
            state = read_state(folder)
            used = False
        if not overwrite and is_finished(folder, state):
            raise UserError(f"{folder} holds a finished model (best/ weights, nothing to resume); nothing was changed. "
                            "Pass another --out, or --overwrite to replace it")
        if used:
            files.remove_stale_temporaries(folder)  # a killed run's own temporaries are ours, not foreign
            foreign = sorted(n for n in os.listdir(folder) if n not in OURS and not n.startswith(OURS_PREFIXES))
            if foreign:
                raise UserError(f"--overwrite {folder}: it also holds files train.py did not write "
                                f"({', '.join(foreign[:5])}); nothing was changed. Move them away, or pass another "
                                "--out")
            self.path = files.temporary_name(folder)  # trained in apart; replaces folder at the first best
            os.makedirs(self.path)
        if overwrite:
            state = None
        config_path = os.path.join(self.path, checkpoints.CONFIG)
        if os.path.exists(config_path):
            old = checkpoints.read_config(self.path)
            if old["model"] != config["model"]:
                raise UserError(f"{folder} holds a {old['model']} checkpoint, not {config['model']}; "
                                "pass another --out (nothing was overwritten)")
            if state and state.get("step") is not None:
                # Settings added since a folder was written count as their default there.
                changed = changed_from(old["settings"])
                changed += [(k, old["hparams"].get(k)) for k in config["hparams"]
                            if old["hparams"].get(k) != config["hparams"][k]]
                if changed:
                    raise UserError(f"{folder} was trained with other settings ({', '.join(k for k, _ in changed)}: "
                                    f"{', '.join(str(v) for _, v in changed)}); "
                                    "rerun with the same ones to resume, or pass another --out")
        tidy(self.path, state)
        if state is None or state.get("step") is None:
            state = None
        files.write_json(config_path, config)
        write_log(self.path, state["log"] if state and "log" in state else None)
        return state

    @property
    def replacing(self):
        """Whether this run trains apart, to replace the folder's old model (--overwrite)."""
        return self.path != self.folder

    def commit(self, state):
        """The save sequence's commit point: state.json, then index files, log and clean-up follow it.
        A replacing run takes the folder's place once it has best weights."""
        files.fault_point("before_state")
        files.write_json(os.path.join(self.path, STATE), state)
        files.fault_point("after_state")
        tidy(self.path, state)
        write_log(self.path, state["log"])
        if self.replacing and state.get("best_step") is not None:
            os.link(os.path.join(self.folder, LOCK), os.path.join(self.path, LOCK + ".new"))  # the same locked file
            os.replace(os.path.join(self.path, LOCK + ".new"), os.path.join(self.path, LOCK))
            files.replace_folder(self.path, self.folder)
            self.path = self.folder

    def close(self):
        """Release the lock; a replacing run that never reached best weights leaves the old model as it was."""
        if self.replacing and os.path.isdir(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = self.folder
        if self._lock is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.folder, LOCK))  # while still holding it: see _lock
            self._lock.close()
            self._lock = None


def tidy(folder, state):
    """Leave folder/best and folder/last holding exactly the checkpoints `state` names, their index files
    pointing at them; remove everything else there (a killed run's half-saved or uncommitted checkpoints,
    TensorFlow's temporary files).  state None: no committed training, so both are emptied (read_state
    has refused a folder whose weights lack a state)."""
    for which, key in (("best", "best_step"), ("last", "step")):
        step = state.get(key) if state else None
        keep = set(checkpoints.checkpoint_files(folder, which, step)) if step is not None else set()
        if step is not None and not any(n.endswith(".index") for n in keep):
            step, keep = None, set()  # the state names a checkpoint that is not there
        sub = os.path.join(folder, which)
        for name in (os.listdir(sub) if os.path.isdir(sub) else ()):
            full = os.path.join(sub, name)
            if name in keep or name == "checkpoint":
                continue
            shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
        checkpoints.point_index_at(folder, which, step)
