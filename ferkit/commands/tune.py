"""Sweep training recipes on Ray Tune: many runs at once, on every core and node, the trailing ones stopped early.

    ferkit tune --arch acnn_alstm --data CACHE --grid lr=0.0005,0.001 --grid set.dropout=0.3,0.5
                [--space space.json] [--samples N] [--seeds 0,1] [--epochs 45] [--scheduler asha|median|none]
                [--cpus-per-trial 1] [--gpus-per-trial 0] [--address HOST:PORT|auto] --out runs/sweeps/NAME
    (python tune.py takes the same options)

Each trial is an ordinary training run in its own folder, OUT/trials/NAME, which evaluate, export
and predict take like any other; it reports its PublicTest accuracy to Tune after every epoch, and
PrivateTest is never read.  --grid NAME=V1,V2 varies a training setting (any `ferkit train` option:
lr, erase, mixup, epochs...) or, as set.NAME, a model hyperparameter; --space FILE gives grids and
random ranges as JSON ({"grid": {"lr": [0.001]}, "random": {"set.dropout": {"uniform": [0.2, 0.6]},
"lr": {"loguniform": [1e-4, 1e-2]}}, "samples": 8, "seeds": [0, 1]}), drawn with a fixed seed so the
same command makes the same trials.  ASHA (or the median rule) stops trials that trail after a
grace period; --scheduler none runs every one to the end.

Without --address, Ray starts inside this process on loopback alone (its ports have no
authentication) with this machine's cores, each trial taking --cpus-per-trial of them (and as many
TensorFlow threads), and stops at the end; --address joins a cluster, where --gpus-per-trial asks
for GPUs.  Killed, the same command again skips the trials that ended and resumes the others from
their own checkpoints; a trial whose worker dies is retried from its checkpoint (--retries); one that
diverges (NaN) is marked so and the sweep goes on.  A different space for the same --out is refused.
Written: OUT/results.csv and .parquet (a row per trial: its settings, best PublicTest accuracy and
epoch, epochs run, why it stopped, wall time, folder), OUT/curves.png; the table is printed, best
first, with the command that refits the winner on Training + PublicTest.
"""
from ferkit import cli, models, sweep


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    parser.add_argument("--arch", required=True, choices=sorted(models.MODELS), help="which architecture to train")
    cli.add_data_option(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder (such as runs/sweeps/NAME)")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                        help="values to try for a training setting or set.HYPERPARAMETER (repeatable)")
    parser.add_argument("--space", metavar="FILE", help="a JSON space: grid, random ranges, samples, seeds")
    parser.add_argument("--samples", type=int, metavar="N", help="random draws of the space's random part (default: 1)")
    parser.add_argument("--seeds", metavar="S1,S2", help="training seeds; every trial runs once per seed (default: 0)")
    parser.add_argument("--epochs", type=int, help="each trial's schedule (default: train's, 30)")
    cli.add_batch_size(parser, 64, "faces per training step")
    parser.add_argument("--max-steps", type=int, metavar="N", help="stop each trial after N steps (smoke tests)")
    parser.add_argument("--scheduler", choices=sweep.SCHEDULERS, default="asha", help="early stopping (default: %(default)s)")
    parser.add_argument("--grace", type=int, metavar="EPOCHS", help="epochs before a trial may be stopped (default: a fifth)")
    parser.add_argument("--cpus-per-trial", type=float, default=1, metavar="N", help="(default: %(default)s)")
    parser.add_argument("--gpus-per-trial", type=float, default=0, metavar="N", help="(default: %(default)s)")
    parser.add_argument("--concurrent", type=int, metavar="N", help="at most N trials at once (default: as many as fit)")
    parser.add_argument("--retries", type=int, default=2, metavar="N",
                        help="attempts after a trial's worker dies, each from its checkpoint (default: %(default)s)")
    parser.add_argument("--address", help="a running Ray cluster (HOST:PORT, or auto); default: Ray inside this process")
    args = parser.parse_args(argv)
    if not args.grid and not args.space and not args.seeds:
        parser.error("nothing to sweep: give --grid NAME=V1,V2 (repeatable), a --space file, or --seeds")
    return args


def space_of(args):
    """--space, then --grid, --samples and --seeds over it -> sweep.Space."""
    space = sweep.Space.from_json(args.space) if args.space else sweep.Space()
    for item in args.grid:
        name, _, values = item.partition("=")
        if not name or not values.strip(","):
            raise cli.UserError(f"--grid {item}: expected NAME=V1,V2 with at least one value, such as --grid lr=0.0005,0.001")
        space.grid[name] = [v for v in values.split(",") if v]
    if args.samples is not None:
        space.samples = args.samples
    if args.seeds:
        try:
            space.seeds = [int(s) for s in args.seeds.split(",") if s]
        except ValueError:
            raise cli.UserError(f"--seeds {args.seeds}: expected whole numbers such as 0,1") from None
    return space


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    fixed = {"data": args.data, "batch_size": args.batch_size}
    rows = sweep.run(args.arch, space_of(args), args.out, epochs=args.epochs, max_steps=args.max_steps,
                     scheduler=args.scheduler, grace=args.grace, cpus_per_trial=args.cpus_per_trial,
                     gpus_per_trial=args.gpus_per_trial, address=args.address, retries=args.retries,
                     concurrent=args.concurrent, **fixed)
    return 0 if rows and rows[0]["best_val_accuracy"] is not None else 1
