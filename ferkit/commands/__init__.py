"""The `ferkit` command: one entry point, a mode per subcommand, as `pip install` installs it.

    ferkit MODE [options]        ferkit MODE --help says the rest
    python -m ferkit MODE ...    the same
    python MODE.py ...           the same, from a checkout (the design card's scripts)

Each mode is a module of this package with main(argv, prog) -> exit status, which parses the
mode's options (ferkit.cli defines the shared ones once) and calls the library.  A mode whose
extra is not installed says which pip line brings it, in one line, before anything is imported.
"""
import importlib
import sys

from ferkit import cli

# name -> (what it does, in a line; the extra(s) of pyproject.toml it needs, or None for the base package)
COMMANDS = {
    "preprocess": ("FER-2013 as downloaded (csv, tar.gz, image folders) -> the training cache", None),
    "train": ("train a model, saving under checkpoints/<arch>/ (resumable, PublicTest chooses)", "train"),
    "evaluate": ("accuracy report of models on a FER-2013 split (PrivateTest by default)", "train"),
    "predict": ("emotions of the faces in photos, a video or a camera", None),
    "export": ("a trained model as a .tflite file or a SavedModel folder", "train"),
    "serve": ("the HTTP API and its web page", "serve"),
    "annotate": ("photos and hours of video into a Parquet dataset, on Ray", "scale"),
    "tune": ("sweep training recipes on Ray Tune, trailing trials stopped early", ("train", "scale")),
}


def version():
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ferkit")
    except PackageNotFoundError:  # a checkout on sys.path, never installed
        return "unknown (not installed)"


def usage():
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (what, _) in COMMANDS.items()]
    return ("usage: ferkit MODE [options]   (ferkit MODE --help for its options)\n\n"
            "Facial expression recognition: FER-2013 models trained with TensorFlow, run on LiteRT.\n\n"
            "modes:\n" + "\n".join(lines) + "\n\n  --version  print the version\n")


def run_mode(name, argv=None, prog=None):
    """Mode `name`'s main on argv (sys.argv[1:] if None) -> exit status; its extra is checked first."""
    extras = COMMANDS[name][1] or ()
    if not (argv and ("-h" in argv or "--help" in argv)):
        for extra in (extras,) if isinstance(extras, str) else extras:
            cli.require_extra(extra, f"ferkit {name}")
    return importlib.import_module(f"ferkit.commands.{name}").main(argv, prog)


def script(name):
    """A checkout's NAME.py: the mode, with one-line errors and exit statuses."""
    cli.run(lambda: run_mode(name))


def main(argv=None):
    """The `ferkit` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return sys.exit(0 if argv else 2)
    if argv[0] == "--version":
        print(f"ferkit {version()}")
        return sys.exit(0)
    name = argv[0]
    if name not in COMMANDS:
        print(f"error: no mode {name!r}; the modes are {', '.join(COMMANDS)} (see ferkit --help)", file=sys.stderr)
        return sys.exit(2)
    cli.run(lambda: run_mode(name, argv[1:], prog=f"ferkit {name}"))
