"""Every file the toolkit writes is written whole or not at all, through this module.

  with atomic_write(path, "w") as f: ...        a file object; path appears only once f is complete
  with atomic_path(path) as tmp: save(tmp)       for libraries that write by file name (savefig, VideoWriter)
  write_json(path, obj)                          indented JSON, atomically
  fig, ax = new_figure(figsize=(w, h))           plt.subplots on the file-only backend (no display needed)
  save_figure(fig, path)                         that figure as a 256-colour PNG, atomically, then closed
  compact_png(data) -> bytes                     a PNG's pixels as a 256-colour PNG (a third of the bytes)
  remove_stale_temporaries(folder)               what killed runs of ours left in folder
  with c_path(path) as name: cv2.VideoWriter(name) a name C libraries can take, whatever path's bytes
  fault_point(name)                              the interruption tests' hook (FERKIT_KILL_AT)

The temporary is a hidden file in the destination's own folder (.ferkit-PID-XXXX.tmp, plus
the destination's extension, which some writers go by), so the final rename never crosses
file systems; it is flushed and fsynced before os.replace puts it in place, and the folder is
fsynced after, so a power loss leaves either the old file or the new one.  On any failure,
Ctrl-C included, the temporary is removed and the destination is as it was.  Its name is
ASCII whatever the destination's, so no C library sees a name it cannot encode.  A full disk
is a UserError naming the file.  Temporaries whose process is dead (kill -9) are removed the
next time anything of ours writes into that folder.
"""
import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import signal

from ferkit.cli import UserError

_TEMPORARY = re.compile(r"^\.ferkit-(\d+)-[A-Za-z0-9_]+\.tmp")


def fault_point(name):
    """Test hook for the interruption tests: FERKIT_KILL_AT=NAME:N[:INT] kills this process, as SIGKILL
    would at a random moment (or with :INT interrupts it, as Ctrl-C would), the N-th time it passes
    the point NAME.  Points: "write" (every file below, complete but not yet in place) and train.py's
    save sequence (scoring, after_best, after_last, before_state, after_state)."""
    point, _, rest = os.environ.get("FERKIT_KILL_AT", "").partition(":")
    if point == name:
        count, _, how = rest.partition(":")
        fault_point.count = getattr(fault_point, "count", 0) + 1
        if fault_point.count == int(count or 1):
            if how == "INT":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def c_path(path):
    """A name for path (which need not exist yet; its folder must) that C libraries taking char*
    paths can open: OpenCV's video reader and writer crash (segfault) on names that are not valid
    UTF-8.  An ASCII path is its own name; otherwise, on Linux, /proc/self/fd/N/BASENAME through a
    descriptor of its folder held open for the block (or /proc/self/fd/N of an existing file
    whose own name is not ASCII).  Elsewhere the path as it is."""
    text = os.fsdecode(path)
    if text.isascii() or not os.path.isdir("/proc/self/fd"):
        yield text
        return
    folder, base = os.path.split(os.path.abspath(text))
    exists = os.path.exists(text)
    fd = os.open(text if exists and not base.isascii() else folder, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{fd}" + ("" if exists and not base.isascii() else f"/{base}")
    finally:
        os.close(fd)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folder):
    """Remove the temporaries of dead processes of ours (files or folders) from folder."""
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return
    for name in names:
        match = _TEMPORARY.match(name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            full = os.path.join(folder, name)
            shutil.rmtree(full, ignore_errors=True) if os.path.isdir(full) else _remove(full)


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _fsync_folder(folder):
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _disk_full(path, error):
    return UserError(f"{path}: no space left on the device ({error.strerror}); nothing was written there. "
                     "Free some space, or write somewhere else, and run again")


def temporary_name(path):
    """A new name beside path for a temporary of this process (nothing is created there);
    the stale temporaries of dead processes in that folder are removed first."""
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(folder)
    return os.path.join(folder, f".ferkit-{os.getpid()}-{secrets.token_hex(4)}.tmp{os.path.splitext(path)[1]}")


def replace_folder(new, path):
    """Put the finished folder `new` in place as path, replacing what is there: a folder
    there is renamed aside first and removed last, so path never holds a mixture."""
    if os.path.isdir(path) and not os.path.islink(path):
        old = temporary_name(path)
        os.rename(path, old)
        os.rename(new, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, path)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_path(path, directory=False):
    """A temporary name beside path to write to (a folder, if directory=True: its writer
    creates it); put in place as path when the block ends without an error, removed otherwise."""
    tmp = temporary_name(path)
    try:
        if not directory:
            open(tmp, "xb").close()
        yield tmp
        fault_point("write")
        if directory:
            replace_folder(tmp, path)
        else:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_folder(os.path.dirname(tmp))
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True) if os.path.isdir(tmp) else _remove(tmp)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise _disk_full(path, e) from None
        raise


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_args):
    """open(path, mode) that leaves path untouched unless the block completes (see the module docstring)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_args) as f:
            yield f
            f.flush()


def write_json(path, obj):
    """Indented JSON, written atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def compact_png(data):
    """PNG bytes -> the same picture as a 256-colour PNG.  Plots and confusion matrices have a few
    dozen distinct colours besides anti-aliasing, so they look the same at a third of the bytes
    (the shipped models' reports carry 40 of them)."""
    import io
    from PIL import Image
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode == "P":
            return data
        opaque = image.mode in ("RGB", "L") or (image.mode == "RGBA" and image.getextrema()[3][0] == 255)
        rgb = image.convert("RGB") if opaque else image.convert("RGBA")
        method = Image.Quantize.MEDIANCUT if opaque else Image.Quantize.FASTOCTREE
        out = io.BytesIO()
        rgb.quantize(256, method=method).save(out, "PNG", optimize=True)
    return out.getvalue()


def new_figure(**subplots_args):
    """plt.subplots(**subplots_args) -> (figure, axes) on Agg, so plotting works without a display."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(**subplots_args)


def save_figure(fig, path, dpi=100):
    """A Matplotlib figure written to path as a 256-colour PNG (compact_png), atomically; the
    figure is closed afterwards, written or not, so pyplot does not keep it alive."""
    import io
    import matplotlib.pyplot as plt
    try:
        raw = io.BytesIO()
        fig.savefig(raw, format="png", dpi=dpi)
        with atomic_write(path, "wb") as f:
            f.write(compact_png(raw.getvalue()))
    finally:
        plt.close(fig)
