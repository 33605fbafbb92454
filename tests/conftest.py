"""Shared test helpers: running the scripts, small synthetic FER-2013 files, a tiny trained checkpoint."""
import fcntl
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_CSV = os.path.join(os.path.dirname(ROOT), "shared", "data", "fer2013.csv.gz")
needs_real_data = pytest.mark.skipif(not os.path.exists(REAL_CSV),
                                     reason=f"the real FER-2013 is not at {REAL_CSV} (it is never committed)")

sys.path.insert(0, ROOT)

# TensorFlow's C++ log level, as every script has it (ferkit.cli.quiet_tensorflow): it is read once per
# process, when TensorFlow is first imported, and a test module may import it first (models.layers does),
# for the scripts run_script runs in this process too.  Without it their stderr would carry C++ warnings
# that no user's command shows.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # The workers already keep every core busy: TensorFlow's default of a thread pool as wide as the
    # machine in each of them (and in each script they start) only adds threads spinning for work.
    # Set before TensorFlow makes its first session, which is when it reads them.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under --dist loadgroup, xdist tells its scheduler a test's xdist_group by appending @GROUP to the
    test's node id in each worker.  A pytest on which that no longer takes (pytest-dev/pytest-xdist#1386)
    spreads a group over the workers without a word, each building the group's costly fixture (a Ray
    cluster, the exports) again: stop instead."""
    if getattr(config.option, "loadgroup", False):
        lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if lost:
            raise pytest.UsageError(f"xdist_group is not honoured by this pytest and pytest-xdist ({lost[0]} has no "
                                    "@group): install the versions in tests/requirements.txt")


def run_script(script, *args, check=None, timeout=600, process=False, cwd=ROOT):
    """Run one of the top-level scripts with these arguments as a user would; returns a CompletedProcess
    (returncode, text stdout and stderr).

    By default the script runs in this process (its __main__ block, with argv, the current folder,
    file descriptors 1 and 2, signal handlers and the environment set as a new process would have them,
    and put back afterwards): what a subprocess adds is TensorFlow's import, about 5 s a call (4.7 s on
    one Zen 3 core).  process=True runs a real one, for what only a process shows (a first import, an
    exit status set by a signal, a limit OpenCV reads once per process).  cwd: the folder it runs in (the checkout by default)."""
    argv = [os.path.join(ROOT, script), *map(str, args)]
    if process:
        proc = subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    else:
        proc = _run_here(argv, cwd)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def _run_here(argv, cwd=ROOT):
    """run_script's in-process runner: the script as __main__, everything it writes to file descriptors
    1 and 2 (Python's and C libraries' alike) collected as a subprocess's pipes would be."""
    saved = (sys.argv, sys.stdout, sys.stderr, list(sys.path), os.getcwd(), dict(os.environ),
             {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)})
    if "tensorflow" in sys.modules:  # each run builds its graph from scratch, as in a new process
        sys.modules["tensorflow"].compat.v1.reset_default_graph()
    sys.stdout.flush()
    sys.stderr.flush()
    fds = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
        # A script's own folder goes first on the path, as Python puts it; `python -m ferkit` (ferkit/__main__.py)
        # puts the current folder there, never the package's.
        is_module = os.path.basename(argv[0]) == "__main__.py"
        sys.argv, sys.path[0:0] = argv, [ROOT if is_module else os.path.dirname(argv[0])]
        os.chdir(cwd)
        code = 0
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException:  # a traceback, exit 1, as Python itself would
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            for fd in fds:
                os.close(fd)
            sys.argv, sys.stdout, sys.stderr, sys.path[:], cwd, env, handlers = saved
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            for s, handler in handlers.items():
                signal.signal(s, handler)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="surrogateescape")
        stderr = err.read().decode("utf-8", errors="backslashreplace")
    # text=True's universal newlines, which turn tqdm's carriage returns into line ends
    stdout, stderr = (text.replace("\r\n", "\n").replace("\r", "\n") for text in (stdout, stderr))
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def load_tool(relative):
    """A tool's module (tools/NAME.py) loaded by its path, for its functions: sys.path as it was after
    (a tool puts the checkout on it when it runs)."""
    import importlib.util
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(relative))[0],
                                                      os.path.join(ROOT, relative))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved


def synthetic_faces(labels, seed=0):
    """Learnable fake faces: class k is a bright 12x12 square at one of 7 places, on noise. -> uint8 (N, 48, 48, 1)."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 80, size=(len(labels), 48, 48, 1), dtype=np.uint8)
    for i, k in enumerate(labels):
        y, x = divmod(int(k), 3)
        faces[i, 4 + 14 * y:16 + 14 * y, 4 + 14 * x:16 + 14 * x] = 230
    return faces


def balanced_labels(per_class):
    return np.repeat(np.arange(7), per_class)


def csv_rows(labels, usages=None, seed=0):
    """Rows 'label,pixels[,usage]' of a FER-2013 CSV for the given labels."""
    faces = synthetic_faces(labels, seed)
    rows = []
    for i, (k, face) in enumerate(zip(labels, faces)):
        row = f"{k},{' '.join(map(str, face.ravel()))}"
        rows.append(row + (f",{usages[i]}" if usages is not None else ""))
    return rows


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """A small .npz cache in preprocess.py's format: 84 Training, 28 PublicTest, 28 PrivateTest faces."""
    from ferkit.data import save_cache
    splits = {}
    for seed, (split, per_class) in enumerate((("Training", 12), ("PublicTest", 4), ("PrivateTest", 4))):
        labels = balanced_labels(per_class)
        splits[split] = (synthetic_faces(labels, seed), labels)
    path = tmp_path_factory.mktemp("cache") / "tiny.npz"
    save_cache(path, splits)
    return path


def built_once(tmp_path_factory, worker_id, name, build):
    """The path of `name` (a file or folder) that build(path) makes; made once per test run, not once
    per xdist worker.

    The first worker to ask builds it in a folder all workers see (under a lock, which the others
    wait on) and every worker gets a copy of its own, so one worker's writes (reports beside a
    checkpoint, say) never reach another's.  Without xdist it is built where it is used."""
    own = tmp_path_factory.mktemp(os.path.splitext(name)[0]) / name
    if worker_id == "master":
        build(own)
        return own
    shared = tmp_path_factory.getbasetemp().parent / f"built-once-{name}"   # the run's folder, above the workers'
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # released when the file closes, also if build fails
        if not (shared / "done").exists():   # a build that failed left no mark: build again
            shutil.rmtree(shared, ignore_errors=True)
            (shared / "work").mkdir(parents=True)
            build(shared / "work" / name)
            (shared / "done").touch()
    shutil.copytree(shared / "work", own.parent, dirs_exist_ok=True)
    return own


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, worker_id, synthetic_cache):
    """An ACNN-ALSTM checkpoint folder trained by train.py for two short epochs on the synthetic cache."""
    return built_once(tmp_path_factory, worker_id, "acnn_alstm", lambda folder: run_script(
        "train.py", "--arch", "acnn_alstm", "--data", synthetic_cache, "--epochs", 2, "--batch-size", 16,
        "--out", folder, check=0))


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory, worker_id, tiny_checkpoint, synthetic_cache):
    """tiny_checkpoint exported to a float .tflite: what predict and the API tests run, in a fifth of the
    time a checkpoint takes (no TensorFlow); the parity tests compare the two."""
    return built_once(tmp_path_factory, worker_id, "tiny.tflite", lambda path: run_script(
        "export.py", "--checkpoint", tiny_checkpoint, "--out", path, "--quantize", "none", "--data", synthetic_cache,
        check=0))
