"""Recipe sweeps, as a library: many training runs at once on Ray Tune, the trailing ones stopped early.

    from ferkit import sweep
    space = sweep.Space(grid={"lr": [5e-4, 1e-3], "set.dropout": [0.3, 0.5]}, seeds=[0, 1])
    table = sweep.run("acnn_alstm", space, out="runs/sweeps/lr_dropout", epochs=45)

A trial is one ordinary training run (ferkit.training.train) in its own run folder,
OUT/trials/NAME/, which evaluate, export and predict take like any other.  It reports its PublicTest
accuracy to Tune after every epoch; PrivateTest is never read.  A space's names are TrainSettings
fields (lr, erase, mixup, epochs...) or set.NAME for a model hyperparameter.  The trials are the
product of the grids, times `samples` random draws of the random part (seeded: the same command
makes the same trials), times the seeds.

Faults: the trial list is fixed in OUT/sweep.json, and a different space for the same OUT is refused.
Run again, a sweep skips the trials that ended (finished, stopped early, diverged; OUT/status.json
says which, and a finished state.json is proof enough) and resumes the others from their own last/
checkpoint.  A trial whose worker dies is retried (at most `retries` times), from its checkpoint.
Results: OUT/results.csv and .parquet (a row per trial), OUT/curves.png (every trial's PublicTest
curve, the best drawn bold).
"""
import dataclasses
import itertools
import json
import math
import os
import sys
import time

import numpy as np

from ferkit import cli, files, models, settings
from ferkit.errors import FerkitError

SCHEDULERS = ("asha", "median", "none")
RANDOM_KINDS = ("uniform", "loguniform", "choice", "randint")
NOT_SWEPT = ("data", "label_map", "faces", "init_from", "teacher")  # what the data is, and where training starts: not a recipe
STATUS = "status.json"
SWEEP = "sweep.json"
RESULT_FIELDS = ("trial", "best_val_accuracy", "best_epoch", "epochs_run", "ended", "wall_s", "folder")


class SweepError(FerkitError):
    """A space, a sweep folder or a cluster that cannot be used; said before Ray starts where it can be."""


@dataclasses.dataclass
class Space:
    """What a sweep tries.  grid: {NAME: [values]}, every combination; points: [{NAME: value, ...}], each a
    combination of its own (arms of an experiment); random: {NAME: {"uniform"|"loguniform"|"randint": [lo, hi]}
    or {"choice": [values]}}, drawn `samples` times with `sample_seed`; seeds: training seeds, each trial
    run once per seed.  NAME: a TrainSettings field, or set.NAME for a model hyperparameter."""
    grid: dict = dataclasses.field(default_factory=dict)
    points: list = dataclasses.field(default_factory=list)
    random: dict = dataclasses.field(default_factory=dict)
    samples: int = 1
    sample_seed: int = 0
    seeds: tuple = (0,)

    @classmethod
    def from_json(cls, path):
        """A space.json: {"grid": {...}, "points": [...], "random": {...}, "samples": N, "sample_seed": N, "seeds": [...]}."""
        try:
            raw = cli.read_json(path)
        except (OSError, ValueError) as e:
            raise SweepError(f"--space {path}: cannot read it as JSON ({getattr(e, 'strerror', None) or e})") from None
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)} if isinstance(raw, dict) else {"(not an object)"}
        if unknown:
            raise SweepError(f"--space {path}: unknown keys {', '.join(sorted(unknown))}; expected grid, points, "
                             "random, samples, sample_seed, seeds")
        return cls(**raw)


def _typed(arch, name, value):
    """A value of space NAME, converted to the type of its default (settings field or hyperparameter)."""
    if name.startswith("set."):
        defaults = models.default_hparams(arch)
        key = name[4:]
        if key not in defaults:
            raise SweepError(f"{name}: {arch} has no hyperparameter {key!r}; it has {', '.join(defaults)}")
        kind = type(defaults[key])
    else:
        fields = {f.name: f for f in settings.options()}
        if name not in fields or name in NOT_SWEPT:
            raise SweepError(f"{name}: not a setting a sweep can vary; use one of "
                             f"{', '.join(sorted(n for n in fields if n not in NOT_SWEPT))}, "
                             "or set.NAME for a model hyperparameter")
        kind = {"int": int, "float": float, "str": str, "bool": bool}.get(fields[name].type, fields[name].type)
    try:
        return kind(value) if not (kind is bool and isinstance(value, str)) else value.lower() in ("1", "true", "yes")
    except (TypeError, ValueError):
        raise SweepError(f"{name}={value!r}: not a {kind.__name__}") from None


def _draw(spec, name, rng):
    """One random value of a {"kind": args} spec."""
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in RANDOM_KINDS):
        raise SweepError(f"random {name}: expected one of {', '.join(RANDOM_KINDS)}, such as {{\"uniform\": [0.2, 0.6]}}")
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not args:
            raise SweepError(f"random {name}: an empty choice")
        return args[int(rng.integers(len(args)))]
    lo, hi = args
    if kind == "uniform":
        return float(rng.uniform(lo, hi))
    if kind == "randint":
        return int(rng.integers(lo, hi + 1))
    if lo <= 0:
        raise SweepError(f"random {name}: loguniform needs bounds above 0, got {lo}")
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def trials(arch, space, fixed):
    """The space -> [{"name", "settings": {...}, "hparams": {...}}], every one checked (names, types,
    ranges) before Ray starts.  fixed: settings every trial shares (data, epochs...)."""
    cli.quiet_tensorflow()  # the models' modules import it: without its start-up chatter
    if not space.grid and not space.points and not space.random and len(space.seeds) < 2:
        raise SweepError("the space is empty: give --grid NAME=V1,V2 (or a --space file) to vary something")
    for name, values in space.grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise SweepError(f"grid {name}: an empty list of values; give at least one")
    if space.samples < 1 or (space.random and not space.seeds) or not space.seeds:
        raise SweepError("samples must be at least 1, and seeds must name at least one seed")
    rng = np.random.default_rng(space.sample_seed)
    draws = [{n: _draw(spec, n, rng) for n, spec in sorted(space.random.items())} for _ in range(space.samples)]
    if not all(isinstance(p, dict) for p in space.points):
        raise SweepError("points: expected a list of objects, such as [{\"epochs\": 60}, {\"cutmix\": 1.0}]")
    combos = [dict(zip(space.grid, values)) for values in itertools.product(*space.grid.values())] if space.grid else []
    combos = combos + [dict(p) for p in space.points] or [{}]
    out = []
    for combo, drawn, seed in itertools.product(combos, draws, space.seeds):
        point = {name: _typed(arch, name, value) for name, value in {**combo, **drawn}.items()}
        point["seed"] = int(seed)
        out.append(_trial(arch, len(out), point, fixed))
    return out


def _trial(arch, index, point, fixed):
    """One point of the space -> its trial, validated as `ferkit train` would validate it."""
    from ferkit import training
    trained = {k: v for k, v in point.items() if not k.startswith("set.")}
    overrides = [f"{k[4:]}={v}" for k, v in point.items() if k.startswith("set.")]
    s = settings.TrainSettings(**{**fixed, **trained})
    if s.problems():
        raise SweepError(f"trial {point}: {s.problems()[0]}")
    try:
        hparams = training.model_hparams(arch, overrides)
    except cli.UserError as e:
        raise SweepError(f"trial {point}: {e}") from None
    label = "_".join(f"{k.removeprefix('set.')}={v:g}" if isinstance(v, float) else f"{k.removeprefix('set.')}={v}"
                     for k, v in point.items())
    name = f"t{index:03d}_" + "".join(c if c.isalnum() or c in "=._-" else "-" for c in label)[:100]
    return {"name": name, "point": point, "settings": {**fixed, **trained}, "hparams": hparams}


def prepare(out, plan):
    """Create OUT, or check that the sweep there is this one: OUT/sweep.json holds the arch and every
    trial; another space for the same OUT is refused (nothing is changed)."""
    recorded = os.path.join(out, SWEEP)
    files.check_outputs([("--out", out, "folder")], inputs=[plan["fixed"]["data"]], overwrite=True)
    if os.path.exists(recorded):
        try:
            old = cli.read_json(recorded)
        except (OSError, ValueError) as e:
            raise SweepError(f"{recorded}: unreadable ({e}); move the folder away, or give another --out") from None
        if old != json.loads(json.dumps(plan)):
            raise SweepError(f"--out {out}: holds another sweep (a different arch, space or fixed settings); "
                             "nothing was changed. Give another --out, or the same options as before to resume it")
        return
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(recorded):
        raise SweepError(f"--out {out}: a folder that is not a sweep's and not empty; give a new or empty folder")
    cli.output_folder(out, "--out")
    files.write_json(recorded, plan)


def read_status(out):
    try:
        status = cli.read_json(os.path.join(out, STATUS))
        return status if isinstance(status, dict) else {}
    except (OSError, ValueError):
        return {}


def done(out, trial, status):
    """Whether a trial has ended: its status says so (finished, stopped early, diverged), or its run
    folder's state.json says finished."""
    if trial["name"] in status and status[trial["name"]].get("final"):
        return True
    try:
        state = cli.read_json(os.path.join(out, "trials", trial["name"], "state.json"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and bool(state.get("finished"))


def trainable(config):
    """A Tune trial: the training run of config["trial"] in OUT/trials/NAME, reporting each epoch's
    PublicTest accuracy (and the epochs an earlier, interrupted attempt logged, first)."""
    from ray import tune

    from ferkit import training
    threads = str(config["threads"])
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = threads  # read at the first session
    trial, reported = config["trial"], [0]

    def on_epoch(state):
        for row in state["log"][reported[0]:]:
            tune.report({"val_accuracy": float(row["val_accuracy"]), "epoch": int(row["epoch"])})
        reported[0] = len(state["log"])

    kwargs = dict(trial["settings"], hparams=trial["hparams"], max_steps=config["max_steps"], on_epoch=on_epoch,
                  out=os.path.join(config["out"], "trials", trial["name"]))
    try:
        result = training.train(config["arch"], **kwargs)
    except training.Diverged as e:
        tune.report({"val_accuracy": 0.0, "epoch": reported[0], "ended": f"diverged: {str(e).split(';')[0]}"})
        return
    tune.report({"val_accuracy": result.best_accuracy, "epoch": len(result.state["log"]), "ended": result.ended})


def _scheduler(name, epochs, grace):
    """ASHA (stops the trailing trials at each rung, from `grace` epochs on), the median rule, or none."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule
    if name == "asha":
        # max_t past the last epoch: a trial that reaches it ends by itself, with its own final report
        return ASHAScheduler(time_attr="epoch", max_t=max(epochs, grace) + 1, grace_period=grace, reduction_factor=2)
    if name == "median":
        return MedianStoppingRule(time_attr="epoch", grace_period=grace, min_samples_required=2)
    return FIFOScheduler()


def _last_line(path):
    """The last line of a Tune error file (the exception), or why there is none."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1][:200] if lines else "its worker died"
    except (OSError, TypeError):
        return "its worker died"


def _callback(out, names, log):
    """A Tune callback: a progress line per reported epoch, and each ended trial's status in OUT/status.json
    (written whole, at once) so that a later run skips it."""
    from ray.tune import Callback

    class Progress(Callback):
        def __init__(self, log):
            self.best, self.ended, self.start, self.log = 0.0, 0, time.perf_counter(), log

        def __getstate__(self):  # Tune saves its callbacks with the experiment; a file it opened cannot go along
            return {k: v for k, v in self.__dict__.items() if k != "log"}

        def __setstate__(self, state):
            self.__dict__.update(state, log=sys.stdout)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.best = max(self.best, result.get("val_accuracy", 0.0))
            print(f"[{time.perf_counter() - self.start:6.0f} s] {trial.config['trial']['name']}: epoch "
                  f"{result.get('epoch')} PublicTest {result.get('val_accuracy', 0.0):.4f} | best so far "
                  f"{self.best:.4f} | {self.ended}/{names} trials ended", file=self.log, flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.record(trial, (trial.last_result or {}).get("ended", "stopped by the scheduler"), final=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.record(trial, f"failed: {_last_line(trial.error_file)}", final=False)

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.record(trial, f"retried after: {_last_line(trial.error_file)}", final=False, retried=True)

        def record(self, trial, ended, final, retried=False):
            self.ended += final
            status = read_status(out)
            name = trial.config["trial"]["name"]
            retries = status.get(name, {}).get("retries", 0) + retried
            status[name] = {"ended": ended, "final": final, "retries": retries}
            files.write_json(os.path.join(out, STATUS), status)
            print(f"{name}: {ended}", file=self.log, flush=True)

    return Progress(log)


def run(arch, space, out, epochs=None, max_steps=None, scheduler="asha", grace=None, cpus_per_trial=1,
        gpus_per_trial=0, address=None, retries=2, concurrent=None, log=None, **fixed):
    """Run the sweep of `space` (a Space) over model `arch` into `out` -> the results table (list of dicts,
    best first), also written as OUT/results.csv, .parquet and curves.png.

    fixed: TrainSettings fields every trial shares (data, batch_size...); epochs: each trial's schedule.
    scheduler: asha, median or none, stopping trials after `grace` epochs (default: a fifth of them).
    cpus_per_trial / gpus_per_trial: Ray resources per trial (TensorFlow gets as many threads as CPUs).
    address: a Ray cluster (HOST:PORT or auto); None starts Ray in this process, on loopback, and stops it.
    retries: attempts after a worker dies.  concurrent: at most this many trials at once."""
    log = log or sys.stdout
    if scheduler not in SCHEDULERS:
        raise SweepError(f"scheduler {scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
    if cpus_per_trial <= 0 or gpus_per_trial < 0 or retries < 0 or (concurrent is not None and concurrent < 1):
        raise SweepError("--cpus-per-trial must be above 0, --gpus-per-trial and --retries 0 or more, --concurrent 1 or more")
    fixed = dict(fixed, data=os.path.abspath(fixed.get("data", settings.TrainSettings().data)))
    if epochs is not None:
        fixed["epochs"] = epochs
    epochs = fixed.get("epochs", settings.TrainSettings().epochs)
    planned = trials(arch, space, fixed)
    plan = {"arch": arch, "fixed": fixed, "max_steps": max_steps, "trials": planned}
    out = os.path.abspath(out)
    prepare(out, plan)
    status = read_status(out)
    todo = [t for t in planned if not done(out, t, status)]
    print(f"{len(planned)} trials of {arch}: {len(planned) - len(todo)} ended before, {len(todo)} to run -> {out}",
          file=log, flush=True)
    if todo:
        _fit(arch, todo, out, epochs, max_steps, scheduler, grace or max(1, epochs // 5), cpus_per_trial,
             gpus_per_trial, address, retries, concurrent, len(planned), log)
    return write_results(out, planned, log)


def _fit(arch, todo, out, epochs, max_steps, scheduler, grace, cpus, gpus, address, retries, concurrent, total, log):
    """Tune's run of the trials in `todo`; Ray embedded (and stopped at the end) unless address joins a cluster."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables and banners: our progress lines say it
    import ray
    from ray import tune

    from ferkit import raynode
    connected = not ray.is_initialized()
    if connected:
        raynode.start_ray(address, max(1, os.cpu_count() or 1), verbose=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus}),
            param_space={"trial": tune.grid_search(todo), "arch": arch, "out": out, "max_steps": max_steps,
                         "threads": max(1, int(cpus))},
            tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=_scheduler(scheduler, epochs, grace),
                                        max_concurrent_trials=concurrent,
                                        trial_name_creator=lambda t: t.config["trial"]["name"],
                                        trial_dirname_creator=lambda t: t.config["trial"]["name"]),
            run_config=tune.RunConfig(name=f"tune-{os.getpid()}-{time.time_ns()}", storage_path=os.path.join(out, ".tune"),
                                      failure_config=tune.FailureConfig(max_failures=retries), verbose=0,
                                      callbacks=[_callback(out, total, log)]))
        tuner.fit()
    finally:
        if connected:
            ray.shutdown()


def _row(out, trial, status):
    """A trial's results row, from its run folder (state.json, the truth on disk) and OUT/status.json."""
    folder = os.path.join(out, "trials", trial["name"])
    try:
        state = cli.read_json(os.path.join(folder, "state.json"))
    except (OSError, ValueError):
        state = {}
    log = state.get("log", []) if isinstance(state, dict) else []
    ended = status.get(trial["name"], {}).get("ended") or ("finished" if state.get("finished") else "not run")
    return {"trial": trial["name"], **{k.removeprefix("set."): v for k, v in trial["point"].items()},
            "best_val_accuracy": round(float(state.get("best_accuracy", 0.0)), 4) if log else None,
            "best_epoch": state.get("best_epoch") if log else None, "epochs_run": len(log), "ended": ended,
            "wall_s": round(sum(float(r.get("seconds", 0)) for r in log), 1), "folder": folder}, log


def write_results(out, planned, log=None):
    """OUT/results.csv and .parquet (a row per trial, best first), OUT/curves.png, and the table printed
    with the command that refits the winner on Training + PublicTest -> the rows."""
    import csv
    log = log or sys.stdout
    status = read_status(out)
    rows, curves = zip(*(_row(out, t, status) for t in planned))
    order = sorted(range(len(rows)), key=lambda i: -(rows[i]["best_val_accuracy"] or -1))
    rows, curves = [rows[i] for i in order], [curves[i] for i in order]
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with files.atomic_write(os.path.join(out, "results.csv"), newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq
    with files.atomic_path(os.path.join(out, "results.parquet")) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    plot_curves(rows, curves, os.path.join(out, "curves.png"))
    shown = [k for k in fields if k != "folder"]
    cells = [shown] + [["" if r.get(k) is None else str(r.get(k)) for k in shown] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(shown))]
    print("", *("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells), sep="\n", file=log)
    if rows and rows[0]["best_val_accuracy"] is not None:
        print(f"\nrefit the winner on Training + PublicTest:\n  {refit_command(out, planned, rows[0])}", file=log)
    return rows


def refit_command(out, planned, best):
    """The `ferkit train` line that trains the winning trial's recipe on Training + PublicTest (--refit)."""
    plan = cli.read_json(os.path.join(out, SWEEP))
    trial = next(t for t in planned if t["name"] == best["trial"])
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in trial["settings"].items()
             if k != "data" and v != getattr(settings.TrainSettings(), k, None)]
    flags += [f"--set {k}={v}" for k, v in trial["hparams"].items() if v != models.default_hparams(plan["arch"])[k]]
    return (f"ferkit train --arch {plan['arch']} --data {trial['settings']['data']} {' '.join(flags)} --refit "
            f"--out checkpoints/{plan['arch']}_{os.path.basename(out)}").replace("  ", " ")


def plot_curves(rows, curves, path):
    """Every trial's PublicTest accuracy per epoch, the best (rows[0]) drawn bold -> a PNG."""
    from ferkit.files import new_figure, save_figure
    fig, ax = new_figure(figsize=(8, 5))
    for i, (row, curve) in enumerate(zip(rows, curves)):
        if curve:
            ax.plot([int(r["epoch"]) for r in curve], [float(r["val_accuracy"]) for r in curve],
                    lw=2.5 if i == 0 else 1, alpha=1 if i == 0 else 0.5, label=row["trial"] if i == 0 else None,
                    color="C3" if i == 0 else "C0")
    ax.set(xlabel="epoch", ylabel="PublicTest accuracy", title=f"{len(rows)} trials; best bold")
    ax.grid(alpha=0.3)
    if rows and curves[0]:
        ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
