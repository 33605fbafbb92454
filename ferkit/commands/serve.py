"""Emotions over HTTP: a JSON API, and a web page for photos and the webcam.

    ferkit serve [--host 127.0.0.1] [--port 8000] [--model acnn_alstm_ferplus | --checkpoint PATH]
                 [--detector yunet|haar] [--workers N] [--token TOKEN | --token-file PATH | --no-auth] [--cors ORIGIN]
    (python serve.py takes the same options)

Open the printed address for the page: drop photos on it, or turn on the camera.
Programs post an image and get its faces back:

    curl -F image=@photo.jpg http://127.0.0.1:8000/v1/recognize
    curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' 'http://127.0.0.1:8000/v1/recognize?largest=true'

Each face is the dict predict --json prints.  GET /v1/health says when the model is loaded,
GET /v1/models lists the shipped models with their scores, /openapi.json describes the API.
It listens on 127.0.0.1 alone unless --host says otherwise; any other address needs --token
(clients then send 'Authorization: Bearer TOKEN'; the token may also come from a file or from
$FERKIT_TOKEN, out of sight of ps) or an explicit --no-auth.  Clients can choose
among the shipped models by name (?model=NAME), never a file, and nothing they send is written
to disk.  Ctrl-C or SIGTERM finishes the requests in flight, then exits 0.
"""
import ipaddress
import os
import signal
import socket

from ferkit import cli
from ferkit.backends import DEFAULT_MODEL
from ferkit.detectors import DETECTORS, MIN_SCORE
from ferkit.settings import ServiceSettings

DEFAULTS = ServiceSettings()  # the service's own defaults, shown and used by the options


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: not known to stay on this machine
        return False


TOKEN_VARIABLE = "FERKIT_TOKEN"  # the token, out of sight of ps, when neither --token nor --token-file is given
HEADER_LIMIT = 64 << 10  # bytes of request line and headers; more is refused by the HTTP parser (h11)


def read_token(args):
    """The token from --token, --token-file or $FERKIT_TOKEN (in that order), or None."""
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                return f.readline(4096).strip()
        except (OSError, UnicodeDecodeError) as e:
            raise cli.UserError(f"--token-file {args.token_file}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    return args.token if args.token is not None else os.environ.get(TOKEN_VARIABLE)


def add_options(parser):
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    cli.add_model_options(parser, default=DEFAULT_MODEL)  # --model: the model answering requests that name none
    parser.add_argument("--detector", default="yunet", choices=DETECTORS, help="face detector (default: %(default)s)")
    parser.add_argument("--min-score", type=float, default=MIN_SCORE, metavar="S",
                        help="the YuNet score a face needs, in (0, 1] (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="processes, each with its own model (default: %(default)s; one already uses every core)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /v1/recognize and /v1/models "
                      f"(visible to other users in ps: prefer --token-file, or ${TOKEN_VARIABLE})")
    auth.add_argument("--token-file", metavar="PATH", help="read the token from the first line of this file")
    auth.add_argument("--no-auth", action="store_true", help="serve a non-loopback --host without a token")
    parser.add_argument("--cors", metavar="ORIGIN", action="append", default=[],
                        help="let pages from ORIGIN (https://example.org) call the API; repeatable (default: none)")
    parser.add_argument("--max-body-mb", type=float, default=DEFAULTS.max_body / (1 << 20), metavar="MB",
                        help="largest request body, in MB (default: %(default)s); larger ones get 413 unread")
    parser.add_argument("--body-timeout", type=float, default=DEFAULTS.body_timeout, metavar="SECONDS",
                        help="drop a request whose body stalls this long between two chunks, with 408 (default: %(default)s)")
    parser.add_argument("--queue", type=int, default=DEFAULTS.queue, metavar="N",
                        help="requests waiting for the model per process, at most; more get 503 (default: %(default)s)")


def parse_args(argv=None, prog=None):
    parser = cli.ArgumentParser(__doc__, prog=prog)
    add_options(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.port < 65536:
        parser.error(f"--port must be 0 to 65535, got {args.port}")
    if args.workers < 1 or args.queue < 1:
        parser.error("--workers and --queue must be at least 1")
    if not 0 < args.min_score <= 1:
        parser.error(f"--min-score must be in (0, 1], got {args.min_score}")
    if not 0 < args.body_timeout < float("inf"):
        parser.error(f"--body-timeout must be a number of seconds above 0, got {args.body_timeout}")
    if not args.max_body_mb > 0:
        parser.error(f"--max-body-mb must be above 0, got {args.max_body_mb}")
    if args.token_file and not os.path.isfile(args.token_file):  # a FIFO would hang the read
        parser.error(f"--token-file {args.token_file}: not a regular file")
    args.token = read_token(args)
    if args.token is not None and not args.token.strip():
        parser.error("--token is empty; give a secret, for example from: python -c 'import secrets; print(secrets.token_urlsafe())'")
    if not is_loopback(args.host) and args.token is None and not args.no_auth:
        parser.error(f"--host {args.host} lets other machines in: give --token TOKEN (clients send "
                     "'Authorization: Bearer TOKEN'), or --no-auth to serve without one")
    return args


def listen(host, port):
    """The listening socket, bound here so that a taken port is a one-line error, not a log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = "choose another with --port" if e.errno == 98 else "check --host"
        raise cli.UserError(f"cannot listen on {host}:{port} ({e.strerror}); {hint}") from None
    sock.listen(2048)
    sock.set_inheritable(True)  # --workers: the processes share it
    return sock


def server_config(args):
    """The options -> (uvicorn.Config, the listening socket), the app built in this process or, with
    --workers N, in each worker from the settings handed over in the environment."""
    import uvicorn
    from ferkit.service import create_app
    settings = ServiceSettings(model=args.model, checkpoint=args.checkpoint, detector=args.detector,
                               min_score=args.min_score, token=args.token, cors=tuple(args.cors),
                               max_body=int(args.max_body_mb * (1 << 20)), queue=args.queue,
                               body_timeout=args.body_timeout)
    sock = listen(args.host, args.port)
    # h11 bounds what a request line and its headers may take (httptools has no limit: 10 clients
    # sending 30 MB header lines held 350 MB); bodies are bounded by the app (--max-body-mb).
    kwargs = dict(log_level="warning", access_log=False, timeout_graceful_shutdown=30, http="h11",
                  h11_max_incomplete_event_size=HEADER_LIMIT)
    if args.workers > 1:
        os.environ["FERKIT_SERVICE"] = settings.to_json()
        return uvicorn.Config("ferkit.service:app_from_environment", factory=True, workers=args.workers, **kwargs), sock
    return uvicorn.Config(create_app(settings), **kwargs), sock


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    from ferkit import backends
    path = backends.resolve(args.checkpoint, args.model)
    backends.check(path)  # a wrong name or folder: one line, before anything loads
    backends.load(path).close()  # a damaged model too: here, not as a traceback from a worker's start-up
    import uvicorn
    config, sock = server_config(args)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {args.checkpoint or args.model} on http://{shown}:{port}/ (the page; the API is "
          f"under /v1{', token required' if args.token else ''}); Ctrl-C stops", flush=True)
    # uvicorn finishes the requests in flight on SIGTERM or Ctrl-C, then raises the signal again with
    # the handlers it found: these make that a normal exit (status 0) instead of death by the signal.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    if args.workers > 1:
        from uvicorn.supervisors import Multiprocess
        Multiprocess(config, sockets=[sock]).run()
    else:
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        if not server.started:
            raise cli.UserError("the service did not start (its error is above)")
    print("stopped")
