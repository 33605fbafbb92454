"""Ray for this toolkit, started one way for every mode that uses it (annotate, tune): joined at an
address, or embedded in this process on loopback alone, and gone with this process.

    raynode.start_ray(address, cpus, verbose)    address None: embedded, at most `cpus` CPUs (this machine's)

Embedded Ray's ports have no authentication, so it listens on 127.0.0.1 alone (docs/annotate.md says
how to secure a cluster), and a watchdog kills what Ray started once the driver has gone, SIGKILL
included: Ray's own agents would otherwise live on for a minute or more.
"""
import os
import sys

from ferkit.cli import UserError

def _reachable(address):
    """Raise UserError unless something listens at HOST:PORT (within seconds): ray.init would retry for minutes."""
    import socket
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except (OSError, ValueError) as e:
        raise UserError(f"--address {address}: no Ray cluster answers there ({getattr(e, 'strerror', None) or e}); "
                        "start one (ray start --head) or leave --address out to run on this machine") from None


# The watchdog: while its driver lives, it notes the driver's descendants (PID and start time) once a
# second; when its stdin closes (the driver has exited, however it died), it kills those still
# running, and their own descendants, until none is left (a few seconds at most).
_WATCHDOG = """
import os, select, signal, sys, time

def table():
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            out[int(pid)] = (int(fields[1]), fields[19])  # parent, start time
        except (OSError, IndexError, ValueError):
            pass
    return out

def descendants(roots, now):
    found, frontier = {}, set(roots)
    while frontier:
        frontier = {p for p, (parent, _) in now.items() if parent in frontier and p not in found and p != os.getpid()}
        found.update((p, now[p][1]) for p in frontier)
    return found

driver, known = int(sys.argv[1]), {}
me = table()[os.getpid()][1]  # processes the driver had before Ray started are not Ray's: left alone
while not (select.select([sys.stdin], [], [], 1.0)[0] and not os.read(sys.stdin.fileno(), 4096)):
    known.update((p, t) for p, t in descendants({driver}, table()).items() if int(t) >= int(me))
for _ in range(40):
    now = table()
    alive = {p: t for p, t in known.items() if p in now and now[p][1] == t}
    alive.update(descendants(set(alive), now))
    if not alive:
        break
    for p in alive:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    known.update(alive)
    time.sleep(0.25)
"""


def _gone_with_this_process():
    """Make embedded Ray's processes end with this one, also when it is SIGKILLed: Ray's agents
    (DashboardAgent, RuntimeEnvAgent) would otherwise live on, orphaned, for a minute or more.
    A watchdog of ours, in a session of its own so that it outlives this process, notes this
    process's descendants while it lives and kills those left once it has gone (its stdin, a
    pipe from here, closes then).  Only descendants started after the watchdog count, but all of
    those do: a program of its own calling run() loses the long-lived children it starts after Ray
    when it exits.  Linux only (it reads /proc)."""
    import subprocess
    if not os.path.isdir("/proc/self"):
        return None
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid())], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _loopback_only():
    """Ray's own single-machine mode (its default on macOS and Windows): it then takes 127.0.0.1 as
    this node's address instead of turning it into the network interface's (resolve_ip_for_localhost).
    The variable reaches the processes Ray starts; the constant, read when ray was imported, this one."""
    os.environ[LOOPBACK_SWITCH] = "0"
    from ray._private import ray_constants
    ray_constants.ENABLE_RAY_CLUSTER = False


def start_ray(address, workers, verbose):
    """Join the cluster at address, or start Ray embedded in this process.  Embedded Ray listens on
    loopback alone (node address 127.0.0.1, no dashboard): its ports have no authentication, so
    anyone who could reach them could run code here.  It gets as many CPUs as the machine has, at
    most, whatever `workers` asks (1000 CPUs on 2 cores would start 1000 actors)."""
    import logging
    import ray
    if address and address != "auto":
        _reachable(address)
    common = dict(include_dashboard=False, log_to_driver=verbose, configure_logging=verbose,
                  logging_level=logging.INFO if verbose else logging.ERROR)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            _loopback_only()
            start_ray.watchdog = _gone_with_this_process()  # kept: its stdin closes when this process ends
            # address "local": a Ray of our own even where RAY_ADDRESS is set or a `ray start` cluster runs
            # here (Ray would otherwise join it, and refuse num_cpus)
            ray.init(address="local", num_cpus=min(workers, os.cpu_count() or 1), _node_ip_address="127.0.0.1",
                     **common)
            where = {node["NodeManagerAddress"] for node in ray.nodes()}
            if where != {"127.0.0.1"}:  # a Ray that ignores the switch: stop rather than listen on the network
                ray.shutdown()
                raise UserError(f"this Ray ({ray.__version__}) would listen on {', '.join(sorted(where))}, not on "
                                "loopback alone; install the version in requirements.txt")
    except ConnectionError as e:
        raise UserError(f"--address {address}: cannot join a Ray cluster there ({str(e).splitlines()[0]}); start "
                        "one (ray start --head) or leave --address out to run on this machine") from None


