"""The HTTP service behind serve.py: a JSON API and a web page over Recognizer.

  app = create_app(ServiceSettings(...))   a FastAPI app for uvicorn

  POST /v1/recognize  one image: multipart field "image", or the raw bytes with an image/* content type;
                      query largest, no_detect (true/false), model (a shipped model's name)
                      -> {"model", "width", "height", "faces": [...]}, each face exactly Recognizer.recognize's
                      dict, in the upright image's pixels (EXIF applied)
  GET  /v1/health     {"status": "ready", "model", "auth"}; 503 {"status": "loading"} until the model is loaded
  GET  /v1/models     the shipped models: name, labels, backend, trained_on, accuracy figures from their reports
  GET  /              the page (ferkit/web/): photos, and the webcam
  GET  /openapi.json  the API's description.  There is no /docs: Swagger's page loads its code from a CDN.

Errors are {"error": "one line: what, and what to do"}: 400 a bad image or request, 401 a missing or
wrong token, 404, 408 a body that stalls, 413 a body or image over the limits (a body is refused
before it is read whole; an image by the size its header declares, before it is decoded), 415 a body
that is not an image, 503 with Retry-After when the queue is full (only requests whose body has
arrived wait in the queue).

One thread per process runs every model and detector (LiteRT interpreters and OpenCV's detector
are not thread-safe, and each already uses every core); requests wait for it in a queue of bounded
length, so an overload is answered at once instead of piling up.  Nothing a client sends is
written to disk: bodies are read into memory, up to the limit, and parsed there.
"""
import asyncio
import concurrent.futures
import functools
import hmac
import json
import os

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from ferkit import backends
from ferkit.dataset import EMOTIONS
from ferkit.photos import PhotoError, TooLarge, decode_image
from ferkit.settings import ServiceSettings

WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}  # what the page loads besides itself


class ApiError(Exception):
    """An answer other than 200: its status, the one-line message, and extra headers."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error(status, message, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _InMemoryParser(MultiPartParser):
    """Starlette's multipart parser, its uploads kept in memory: the body is already there, bounded by
    max_body, and spooling a part over 1 MB to a temporary file would write what a client sent to disk."""
    spool_max_size = 1 << 62


def _flag(request, name):
    """A true/false query parameter: absent, 'false', '0' -> False; 'true', '1', '' -> True."""
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in ("", "1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"query parameter {name}={value!r}: give true or false")


def model_summary(name):
    """A shipped model as /v1/models lists it: what it is and how it scored (its reports' figures)."""
    folder = os.path.join(backends.PRETRAINED, name)
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    fast = os.path.isfile(os.path.join(folder, backends.FAST_FILE))
    report = "model.eval_PrivateTest" if fast else "eval_PrivateTest"  # the figures of what the service runs
    accuracy = {}
    for labels, suffix in (("fer2013", ""), ("ferplus", "_ferplus")):
        path = os.path.join(folder, f"{report}{suffix}.json")
        if os.path.isfile(path):
            with open(path) as f:
                figures = json.load(f)
            accuracy[labels] = {"split": figures["split"], "faces": figures["n"],
                                "accuracy": round(figures["accuracy"], 4)}
    return {"name": name, "architecture": config["model"], "labels": list(EMOTIONS),
            "backend": "tflite" if fast else "checkpoint",
            "trained_on": config.get("settings", {}).get("labels", "fer2013"), "accuracy": accuracy}


class Models:
    """The Recognizers, made and used on the model thread only: the default, and shipped ones by name."""

    def __init__(self, settings):
        from ferkit.detectors import MIN_SCORE
        from ferkit.recognizer import Recognizer
        self.settings, self._make = settings, Recognizer
        self.min_score = MIN_SCORE if settings.min_score is None else settings.min_score
        self.default = self._make(model=settings.model, checkpoint=settings.checkpoint, detector=settings.detector,
                                  min_score=self.min_score)
        self.by_name = {} if settings.checkpoint else {settings.model: self.default}

    def get(self, name):
        if name is None:
            return self.default
        if name not in self.by_name:
            if name not in backends.shipped_models():  # never a path: clients name shipped models only
                raise ApiError(400, f"model={name!r} is not a shipped model; GET /v1/models lists them")
            self.by_name[name] = self._make(model=name, detector=self.settings.detector, min_score=self.min_score)
        return self.by_name[name]

    def recognize(self, raw, name, largest, no_detect):
        """Image bytes -> the answer's dict (on the model thread)."""
        recognizer = self.get(name)
        try:
            bgr = decode_image(raw)
        except TooLarge as e:
            raise ApiError(413, f"the image is {e}") from None
        except PhotoError as e:
            raise ApiError(400, f"the image cannot be used: {e}") from None
        faces = recognizer.analyse(bgr, largest=largest, detect=not no_detect)[0]
        return {"model": name or self.default_name(), "width": bgr.shape[1], "height": bgr.shape[0], "faces": faces}

    def default_name(self):
        return self.settings.model if not self.settings.checkpoint else self.default.name

    def close(self):
        for recognizer in {id(r): r for r in [self.default, *self.by_name.values()]}.values():
            recognizer.close()


async def read_body(request, limit, timeout):
    """The request's body, refused (413) once it passes limit bytes: at once from Content-Length, or
    while it streams in without one, so an oversized body is never held whole.  A body that stalls
    for `timeout` seconds between chunks is dropped (408), so slow uploads cannot hold the server."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the body is {int(length):,} bytes, over the limit of {limit:,}; send a smaller image")
    chunks, size, stream = [], 0, request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(anext(stream), timeout)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise ApiError(408, f"the body stalled for {timeout:g} s; send it whole, without pauses") from None
        except ClientDisconnect:  # nobody is left to answer: a normal end, not a traceback in the log
            raise ApiError(400, "the client disconnected before its body was complete") from None
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is over the limit of {limit:,} bytes; send a smaller image")
        chunks.append(chunk)
    return b"".join(chunks)


async def image_bytes(request, limit, timeout):
    """The posted image's bytes: the multipart field "image", or a raw image/* body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        body = await read_body(request, limit, timeout)

        async def stream():
            yield body

        try:
            form = await _InMemoryParser(request.headers, stream(), max_files=4, max_fields=16,
                                         max_part_size=limit).parse()
        except MultiPartException as e:
            raise ApiError(400, f"the multipart body cannot be read ({e}); send the image as the field 'image'")
        field = form.get("image")
        if field is None:
            raise ApiError(400, "no field 'image' in the form; send the photo as multipart field 'image'")
        if isinstance(field, str):
            raise ApiError(400, "the field 'image' is text, not a file; send the photo's bytes as a file")
        raw = await field.read()
        await form.close()
    elif kind.startswith("image/"):
        raw = await read_body(request, limit, timeout)
    else:
        raise ApiError(415, f"content type {kind or 'missing'}: send multipart/form-data with a field 'image', "
                            "or the image's bytes with an image/* content type")
    if not raw:
        raise ApiError(400, "the image is empty (0 bytes); send a JPEG, PNG or other image file")
    return raw


def _one_line_errors(app):
    """Every error the app answers, as {"error": one line}: ours, Starlette's (404, 405) and FastAPI's."""
    @app.exception_handler(ApiError)
    async def api_error(request, e):
        return error(e.status, e.message, e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, e):
        message = {404: f"no such page {request.url.path}; the API is under /v1 (GET /openapi.json lists it)",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        return error(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e):
        first = e.errors()[0]
        return error(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}")


def create_app(settings):
    """The FastAPI app of these settings; its model thread and models start with it (lifespan)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferkit-model")
    state = {"models": None, "pending": 0}

    async def lifespan(app):
        loop = asyncio.get_running_loop()
        state["models"] = await loop.run_in_executor(pool, Models, settings)
        try:
            yield
        finally:
            await loop.run_in_executor(pool, state["models"].close)
            pool.shutdown()

    app = FastAPI(title="ferkit", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Facial expressions in photos: POST an image to /v1/recognize.")
    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    _one_line_errors(app)
    authorise = functools.partial(_authorise, settings.token)

    @app.post("/v1/recognize", summary="The faces in one image, with their emotions")
    async def recognize(request: Request):
        authorise(request)
        largest, no_detect = _flag(request, "largest"), _flag(request, "no_detect")
        name = request.query_params.get("model")
        # The body first: a place in the queue is taken only by a request that is ready for the model,
        # so uploads that trickle in (or never finish) cannot keep the others out.
        raw = await image_bytes(request, settings.max_body, settings.body_timeout)
        if state["pending"] >= settings.queue:
            raise ApiError(503, f"busy: {state['pending']} requests ahead; try again in a second",
                           {"Retry-After": "1"})
        state["pending"] += 1
        try:
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(pool, state["models"].recognize, raw, name, largest, no_detect)
            # Serialised here: FastAPI's encoder would walk the plain dict again, about a millisecond a request.
            return Response(json.dumps(answer), media_type="application/json")
        finally:
            state["pending"] -= 1

    _info_routes(app, state, settings, authorise)
    _page_routes(app)
    return app


def _authorise(token, request):
    """Raise 401 unless the request carries 'Authorization: Bearer TOKEN' (or no token is set)."""
    if token is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "missing or wrong token: send the header 'Authorization: Bearer TOKEN'",
                       {"WWW-Authenticate": "Bearer"})


def _info_routes(app, state, settings, authorise):
    """GET /v1/health and /v1/models: state["models"] is the loaded Models (None while loading)."""
    @app.api_route("/v1/health", methods=["GET", "HEAD"], summary="Whether the model is loaded")
    async def health():
        if state["models"] is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "model": state["models"].default_name(), "auth": settings.token is not None}

    @app.get("/v1/models", summary="The shipped models, and how each scored")
    async def models(request: Request):
        authorise(request)
        return {"default": state["models"].default_name(),
                "models": [model_summary(name) for name in backends.shipped_models()]}


def _page_routes(app):
    """The web page and its files, from a fixed list."""
    # HEAD as GET (its body left out by the server): monitors and link checkers probe with it.
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page():
        return FileResponse(os.path.join(WEB, "index.html"), media_type="text/html")

    @app.api_route("/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    async def page_file(name: str):
        if name not in PAGE_FILES:  # a fixed list: no path from a client reaches the file system
            raise HTTPException(404)
        return FileResponse(os.path.join(WEB, name), media_type=PAGE_FILES[name])


def app_from_environment():
    """uvicorn's factory for worker processes (serve.py --workers N): the settings travel in
    FERKIT_SERVICE, which serve.py sets before it starts them."""
    return create_app(ServiceSettings.from_json(os.environ["FERKIT_SERVICE"]))
