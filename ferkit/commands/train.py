"""Train a model on FER-2013's Training split, choosing checkpoints on PublicTest.

    ferkit train --arch acnn_alstm [--data PATH] [--epochs N] [--batch-size N]
                 [--optimizer adam|sgd] [--lr X] [--out checkpoints/<arch>] [--seed N] [--overwrite]
    (python train.py takes the same options)

Every option's default and range are those of ferkit.settings.TrainSettings; config.json
records them with the architecture and its hyperparameters.

--data takes the cache preprocess writes or any layout it reads.  After each epoch the model is
scored on PublicTest; the best weights go to <out>/best, everything needed to resume to <out>/last.
PrivateTest is never read.  Ctrl-C (or SIGTERM) saves and stops; the same command again resumes
where it stopped, also after the process was killed (kill -9, power loss): state.json is written
last, and whatever it does not name is removed on the next start.  A folder holding a finished
model (such as the shipped ones) is never trained into unless --overwrite says so.
--checkpoint-dir was the old name of --out, and --model of --arch; both still work, with a note.

Fine-tuning: --init-from a shipped model's name or a run folder of the same architecture, usually
with --data a collection of your own labelled photos (a folder of emotion folders, or a
path,emotion[,subject][,split] CSV; see ferkit evaluate --help).  Unless given, --lr 0.0003
--epochs 30 --patience 8 --warmup-epochs 0 --batch-size 16 then apply.  The run prints the starting model's
PublicTest (validation) accuracy first and the best after it at the end.
"""
import sys

from ferkit import cli, models, settings, training


def parse_args(argv=None, prog=None):
    """-> (args: the run's options, settings: ferkit.settings.TrainSettings, validated)."""
    parser = cli.ArgumentParser(__doc__, prog=prog, renamed={"--checkpoint-dir": "--out"})
    parser.add_argument("--arch", choices=sorted(models.MODELS), help="which architecture to train")
    parser.add_argument("--model", dest="old_model", choices=sorted(models.MODELS),
                        help="the old spelling of --arch (in the other modes --model names a trained model)")
    cli.add_overwrite(parser, "train into a folder that holds a finished model, replacing it (its weights, log and reports)")
    parser.add_argument("--out", metavar="DIR",
                        help=f"the run folder to save into (default: {training.CHECKPOINTS}/<arch>, in the current folder)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a model hyperparameter, e.g. --set dropout=0.4 (repeatable)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all (for smoke tests)")
    settings.add_options(parser)
    args = parser.parse_args(argv)
    if args.old_model:
        if args.arch and args.arch != args.old_model:
            parser.error(f"--model {args.old_model} and --arch {args.arch} disagree; give --arch only")
        args.arch = args.arch or args.old_model
    if not args.arch:
        parser.error("--arch is required: one of " + ", ".join(sorted(models.MODELS)))
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be at least 1, got {args.max_steps}")
    for item in args.set:
        if "=" not in item or not item.partition("=")[0]:
            parser.error(f"--set {item}: expected NAME=VALUE, such as --set dropout=0.4")
    if args.init_from:  # fine-tuning: gentler defaults for what the command line leaves unsaid
        unsaid = sorted(settings.FINE_TUNING.keys() - parser.given(argv))
        for name in unsaid:
            setattr(args, name, settings.FINE_TUNING[name])
        if unsaid:
            print("note: fine-tuning defaults " + " ".join(f"--{n.replace('_', '-')} {settings.FINE_TUNING[n]:g}"
                                                          for n in unsaid) + " (give any of them to change it)")
    return args, settings.from_args(parser, args)


def main(argv=None, prog=None):
    args, s = parse_args(argv, prog)
    if args.old_model:
        print(f"note: --model is now --arch in train (--model {args.old_model} still works)", file=sys.stderr)
    training.stop_on_signals()
    result = training.train(args.arch, out=args.out, hparams=args.set, max_steps=args.max_steps,
                            overwrite=args.overwrite, settings=s)
    return 130 if result.ended == "interrupted" else 0
