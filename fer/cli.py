"""Command-line helpers shared by the scripts: quiet TensorFlow, one-line errors."""
import os
import sys


class UserError(Exception):
    """A problem the user can fix (bad file, wrong flag); printed as one line, exit status 2."""


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
    try:
        os.dup2(devnull, 2)
        import tensorflow.compat.v1 as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")  # Python-side deprecation warnings
    tf.disable_eager_execution()
    return tf


def run(main):
    """Call main(); UserError -> 'error: ...' on stderr, exit 2; Ctrl-C -> exit 130. No traceback for either."""
    try:
        status = main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
