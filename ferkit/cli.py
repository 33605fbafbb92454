"""Command-line helpers shared by every mode: the options they share (defined once, here), quiet
TensorFlow, one-line errors, the extras a mode needs, output folders."""
import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import threading

from ferkit.dataset import CACHE
from ferkit.errors import FerkitError


class UserError(FerkitError):
    """A problem the user can fix (bad file, wrong flag); printed as one line, exit status 2.
    A FerkitError, so that programs using the API catch it as the toolkit's own."""


def quiet_tensorflow():
    """Import tensorflow.compat.v1 in graph mode with its start-up chatter silenced; returns the module.

    The environment variables must be set before TensorFlow is first imported,
    which is why every module gets TF through here.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING logs
    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)
    # TF's C++ core logs oneDNN and CPU-feature notices while it loads, before
    # any log-level setting is read; hide stderr for the import alone.
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    # TensorFlow's __init__ eagerly imports Keras 3 (and pandas through it), about half a second
    # of every start-up, inside a try/except ImportError.  Nothing here uses Keras (plain tf.nn,
    # see README), so it is kept out of the import, then made importable again for anyone else.
    block_keras = "keras" not in sys.modules
    if block_keras:
        sys.modules["keras"] = None
    try:
        os.dup2(devnull, 2)
        import tensorflow.compat.v1 as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if block_keras:
            del sys.modules["keras"]
    # Python-side logs: deprecation warnings, and the ERROR lines TensorFlow logs before raising
    # the exception that our own one-line messages explain.
    tf.get_logger().setLevel("CRITICAL")
    tf.disable_eager_execution()
    return tf


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the mode's docstring as help, and option errors in one line
    ('error: what; see --help'), exit status 2, like every other error of ours.
    renamed: {old spelling: new option}; the old one still works, with a one-line note on stderr."""

    def __init__(self, description, renamed=None, **kwargs):
        super().__init__(description=description, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        self.renamed = renamed or {}

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        for i, arg in enumerate(args):
            name, eq, value = arg.partition("=")
            if name in self.renamed:
                print(f"note: {name} is now {self.renamed[name]} ({name} still works)", file=sys.stderr)
                args[i] = self.renamed[name] + eq + value
        return super().parse_args(args, namespace)

    def given(self, args=None):
        """The dests that the command line `args` sets itself; the others hold their defaults."""
        defaults = [(a, a.default) for a in self._actions]
        for action, _ in defaults:  # a dest left out of the namespace is one the command line did not set
            action.default = argparse.SUPPRESS
        try:
            namespace, _ = super().parse_known_args(list(sys.argv[1:] if args is None else args))
        finally:
            for action, default in defaults:
                action.default = default
        return set(vars(namespace))


# The options every mode shares, with one spelling, one meaning and one default each.

def add_model_options(parser, default=None, many=False, required=False, checkpoint_help=None):
    """--model NAME (a shipped model) | --checkpoint PATH (a model of one's own), one of them."""
    who = parser.add_mutually_exclusive_group(required=required)
    who.add_argument("--model", default=default, nargs="+" if many else None, metavar="NAME",
                     help="shipped model" + ("s" if many else "") + " (ferkit/pretrained/NAME)"
                          + (" (default: %(default)s)" if default else ""))
    who.add_argument("--checkpoint", nargs="+" if many else None, metavar="PATH",
                     help=checkpoint_help or "a model of your own: a checkpoint folder written by train, or a .tflite "
                                             "file or SavedModel folder written by export")


def add_data_option(parser, help="preprocess cache or any FER-2013 download"):
    parser.add_argument("--data", default=CACHE, help=f"{help} (default: %(default)s)")


def add_batch_size(parser, default, help="faces per batch"):
    parser.add_argument("--batch-size", type=int, default=default, metavar="N", help=f"{help} (default: %(default)s)")


def add_overwrite(parser, help="replace outputs there even where this toolkit did not write them"):
    parser.add_argument("--overwrite", action="store_true", help=help)


# What each extra of pyproject.toml brings, by the modules a mode imports from it.
EXTRAS = {"train": ("tensorflow", "matplotlib", "PIL"), "serve": ("fastapi", "uvicorn", "multipart"),
          "scale": ("ray", "pyarrow", "fsspec"), "video": ("av",)}


def install_line(extra):
    return f'pip install "ferkit[{extra}]" (from a checkout: pip install ".[{extra}]")'


def require_extra(extra, what):
    """Raise a one-line UserError naming the pip line if a module of `extra` is not installed."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)}, which is not installed: {install_line(extra)}")


def missing_extra_line(error):
    """A ModuleNotFoundError of a module an extra brings -> the one line that says which pip line, else None."""
    top = (error.name or "").partition(".")[0]
    extra = next((e for e, mods in EXTRAS.items() if top in mods), None)
    return extra and f"this needs {top}, which is not installed: {install_line(extra)}"


def run(main):
    """Call main(); a FerkitError (UserError, PhotoError...) -> 'error: ...' on stderr, exit 2; a missing
    extra -> the pip line, exit 2; Ctrl-C -> exit 130; a closed pipe on
    stdout (| head) -> a quiet exit. No traceback for any of them."""
    try:
        status = main()
        sys.stdout.flush()
    except FerkitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as e:
        if not missing_extra_line(e):
            raise
        print(f"error: {missing_extra_line(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader left (predict.py DIR | head -1): nothing more to say, and nothing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    sys.exit(status or 0)


def size_of(path):
    """Bytes of a file, or of everything under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def require_regular(path, what="input"):
    """Raise a one-line UserError if path exists but is not a regular file or folder: a FIFO would
    block the first read for ever, and a device (/dev/zero) would never end.  Looked at without
    opening it (opening a FIFO for reading waits for a writer)."""
    import stat
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: the caller's own open says which, in its own words
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UserError(f"{path}: not a regular file (a device, pipe or socket); give a file as the {what}")


MAX_JSON_BYTES = 16 << 20  # far above any config.json, state.json or report we write


def read_json(path):
    """A JSON file of ours -> its value; a special file, one over MAX_JSON_BYTES, or JSON nested too
    deep to parse is a ValueError (callers name the file in their one-line error)."""
    require_regular(path, "JSON file")
    with open(path, "rb") as f:
        raw = f.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ValueError(f"over {MAX_JSON_BYTES >> 20} MB, not a file we wrote")
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deep to be a file we wrote") from None


def check_writable(folder, what):
    """Raise UserError unless a file can be created in folder (tried, not guessed from permission bits,
    which say yes to root even where nothing can be written)."""
    import tempfile
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"{folder}: cannot write {what} there ({e.strerror or e}); choose a writable folder") from None


def output_parent(path, flag, what):
    """Raise a one-line UserError unless the folder that the file or folder `path` goes into exists and
    takes files: checked before long work, so that a mistyped path fails at once."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UserError(f"{flag} {path}: the folder {parent} does not exist")
    check_writable(parent, what)


def output_folder(path, flag):
    """Create the folder an option names for output, or raise a one-line UserError saying why it cannot
    be used (a file there, or not writable).  Whether it may be written at all (inputs, shipped files,
    devices) is files.check_outputs's rule, checked before this."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a file, not a folder; give a folder to write into")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot create the folder ({e.strerror})") from None
    check_writable(path, f"the {flag} output")


_STDERR = threading.Lock()  # file descriptor 2 is the process's: one capture at a time (the service's threads)


@contextlib.contextmanager
def captured_stderr():
    """Collect what C libraries write to stderr (file descriptor 2) meanwhile, instead of letting it
    through: libjpeg reports a file damaged in the middle only there (and decodes it anyway), and
    libpng, FFmpeg, V4L2 and LiteRT would print lines of their own before our one-line error."""
    with _STDERR, _captured_fd2() as messages:
        yield messages


@contextlib.contextmanager
def _captured_fd2():
    sys.stderr.flush()
    saved = os.dup(2)
    messages = []
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            messages += capture.read().decode(errors="replace").splitlines()
