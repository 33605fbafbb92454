"""serve.py as a real process on a free loopback port: the API's answers, every bad input, the token,
the queue's limit, and SIGTERM with a request in flight."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np
import pytest

from conftest import ROOT, run_script

SAMPLE = os.path.join(ROOT, "samples", "astronaut.png")


class Server:
    """serve.py started with these arguments on a port the system picks; .url once it is ready."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "serve.py"), "--port", "0", *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "serving NAME on http://127.0.0.1:PORT/ ..."
        assert line.startswith("serving "), line + self.proc.stderr.read()
        self.url = line.split(" on ")[1].split("/ ")[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    def stop(self):
        """SIGTERM -> (exit status, stdout, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def sample_bytes():
    with open(SAMPLE, "rb") as f:
        return f.read()


def good(client):
    """A request that must succeed: the sample's one happy face."""
    answer = client.post("/v1/recognize", files={"image": ("a.png", sample_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    assert [f["emotion"] for f in answer.json()["faces"]] == ["happy"]


def test_answers_are_the_faces_recognize_and_predict_give(client):
    from ferkit import Recognizer
    expected = Recognizer().recognize(SAMPLE)
    form = client.post("/v1/recognize", files={"image": ("astronaut.png", sample_bytes(), "image/png")})
    raw = client.post("/v1/recognize", content=sample_bytes(), headers={"Content-Type": "image/png"})
    for answer in (form, raw):
        assert answer.status_code == 200
        assert answer.json() == {"model": "acnn_alstm_ferplus", "width": 512, "height": 512, "faces": expected}
    printed = json.loads(run_script("predict.py", SAMPLE, "--json", check=0).stdout)
    assert printed[0]["faces"] == expected
    largest = client.post("/v1/recognize?largest=true&no_detect=false", content=sample_bytes(),
                          headers={"Content-Type": "image/png"}).json()
    assert largest["faces"] == expected[:1]
    whole = client.post("/v1/recognize?no_detect=1", content=sample_bytes(), headers={"Content-Type": "image/png"})
    assert whole.json()["faces"][0]["box"] == [0, 0, 512, 512] and whole.json()["faces"][0]["score"] is None
    other = client.post("/v1/recognize?model=dnn", content=sample_bytes(), headers={"Content-Type": "image/png"})
    assert other.json()["model"] == "dnn" and len(other.json()["faces"]) == 1


def test_boxes_are_in_the_upright_photo(client):
    """A JPEG stored sideways with EXIF orientation 6: the answer's size and box are those of the upright photo."""
    upright = cv2.imread(SAMPLE)
    ok, jpeg = cv2.imencode(".jpg", cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE))
    # An APP1 Exif segment holding one tag, Orientation = 6 (rotate 90 degrees clockwise to view).
    tiff = b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00" + b"\x00" * 4
    app1 = b"\xff\xe1" + (len(tiff) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
    sideways = jpeg.tobytes()[:2] + app1 + jpeg.tobytes()[2:]
    answer = client.post("/v1/recognize", content=sideways, headers={"Content-Type": "image/jpeg"}).json()
    assert (answer["width"], answer["height"]) == (512, 512) and len(answer["faces"]) == 1
    x, y, w, h = answer["faces"][0]["box"]
    assert 150 < x < 210 and 40 < y < 100  # where the face is in the upright sample


def test_the_serving_process_runs_no_tensorflow(server, client):
    good(client)
    with open(f"/proc/{server.proc.pid}/maps") as f:
        loaded = f.read()
    assert "ai_edge_litert" in loaded and f"{os.sep}tensorflow{os.sep}" not in loaded


def test_health_and_models(client):
    assert client.get("/v1/health").json() == {"status": "ready", "model": "acnn_alstm_ferplus", "auth": False}
    listing = client.get("/v1/models").json()
    from ferkit import backends
    assert [m["name"] for m in listing["models"]] == backends.shipped_models()
    assert listing["default"] == "acnn_alstm_ferplus"
    ferplus = next(m for m in listing["models"] if m["name"] == "acnn_alstm_ferplus")
    assert ferplus["backend"] == "tflite" and ferplus["trained_on"] == "ferplus"
    assert ferplus["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert ferplus["accuracy"]["ferplus"]["faces"] == 3350 and ferplus["accuracy"]["ferplus"]["accuracy"] > 0.8
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<script src=\"app.js\">" in page.text
    for name in ("app.js", "style.css", "openapi.json"):
        assert client.get("/" + name).status_code == 200
    assert "/v1/recognize" in client.get("/openapi.json").json()["paths"]
    # No page or asset from the internet (the machine may be offline); no Swagger page.
    for name in ("/", "/app.js", "/style.css"):
        assert "http://" not in client.get(name).text.replace("http://127.0.0.1", "") and "https://" not in client.get(name).text
    assert client.get("/docs").status_code == 404
    assert client.get("/../README.md").status_code == 404 and client.get("/%2e%2e%2fREADME.md").status_code == 404


def _png_claiming(width, height):
    """A valid-looking PNG header that claims width x height (a decompression bomb's first bytes)."""
    ok, png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    png = bytearray(png.tobytes())
    png[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(png)


BAD = [  # (what, request keyword arguments, status, phrase in the error)
    ("not an image", dict(files={"image": ("notes.txt", b"hello there", "text/plain")}), 400, "not an image file"),
    ("truncated JPEG", dict(content=cv2.imencode(".jpg", cv2.imread(SAMPLE))[1].tobytes()[:5000],
                            headers={"Content-Type": "image/jpeg"}), 400, "truncated JPEG"),
    ("corrupt PNG", dict(content=b"\x89PNG\r\n\x1a\n" + b"\x00" * 200 + b"IEND\xaeB`\x82",
                         headers={"Content-Type": "image/png"}), 400, "corrupt PNG"),
    ("empty body", dict(content=b"", headers={"Content-Type": "image/png"}), 400, "empty"),
    ("empty file field", dict(files={"image": ("a.png", b"", "image/png")}), 400, "empty"),
    ("wrong content type", dict(content=b"{}", headers={"Content-Type": "application/json"}), 415, "content type"),
    ("no content type", dict(content=b"abc", headers={"Content-Type": ""}), 415, "content type missing"),
    ("missing field", dict(files={"photo": ("a.png", b"x", "image/png")}), 400, "no field 'image'"),
    ("text field", dict(data={"image": "a.png"}, files={"other": ("b", b"x")}), 400, "is text"),
    ("broken multipart", dict(content=b"--x\r\nnonsense", headers={"Content-Type": "multipart/form-data; boundary=x"}),
     400, None),
    ("pixel bomb", dict(content=_png_claiming(20000, 20000), headers={"Content-Type": "image/png"}), 413,
     "20000x20000 pixels"),
    ("over 20 MB", dict(content=b"\xff\xd8\xff" + b"\x00" * (21 << 20), headers={"Content-Type": "image/jpeg"}), 413,
     "over the limit"),
    ("bad flag", dict(params={"largest": "maybe"}, content=b"x", headers={"Content-Type": "image/png"}), 400,
     "largest='maybe'"),
    ("a path for a model", dict(params={"model": "../../README.md"}, content=sample_bytes(),
                                headers={"Content-Type": "image/png"}), 400, "not a shipped model"),
]


@pytest.mark.parametrize("what, request_args, status, phrase", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_one_line_error_and_the_server_goes_on(client, what, request_args, status, phrase):
    answer = client.post("/v1/recognize", **request_args)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert "\n" not in message and (phrase is None or phrase in message), message
    good(client)


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    """Content-Length over the limit: 413 at once, while the client has sent none of the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  b"Content-Length: 1000000000\r\n\r\n")
        status, _, answer = _answer(s)
    assert status == 413 and "1,000,000,000 bytes, over the limit" in answer["error"]


def test_memory_stays_flat_under_bad_and_good_requests(server, client):
    def round_of(n):
        for _ in range(n):
            for _, request_args, _, _ in BAD[:4]:
                client.post("/v1/recognize", **request_args)
            good(client)
    round_of(20)
    before = server.rss_mb()
    round_of(150)
    assert server.rss_mb() - before < 25, (before, server.rss_mb())


def test_nothing_a_client_sends_is_written_to_disk(client):
    """The multipart parser keeps a part over Starlette's 1 MB spooling size in memory (its spooled
    file never rolls over to disk), and the server answers such a photo."""
    import asyncio
    from ferkit.service import _InMemoryParser
    big = cv2.imencode(".png", cv2.resize(cv2.imread(SAMPLE), (1400, 1400)))[1].tobytes()
    assert len(big) > 1 << 20
    request = httpx.Request("POST", "http://x/", files={"image": ("big.png", big, "image/png")})
    body = request.read()

    async def parse():
        async def stream():
            yield body
        form = await _InMemoryParser(request.headers, stream(), max_part_size=len(body)).parse()
        upload = form["image"]
        return upload.file._rolled, await upload.read()

    rolled, data = asyncio.run(parse())
    assert not rolled and data == big
    answer = client.post("/v1/recognize", files={"image": ("big.png", big, "image/png")})
    assert answer.status_code == 200 and len(answer.json()["faces"]) == 1


def _hold_a_request(port):
    """A socket with a request's headers sent and half its body: a request the server is busy with."""
    body = sample_bytes()
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:1000])
    time.sleep(0.5)
    return s, body[1000:]


def _answer(s):
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(), json.loads(body)


def test_a_full_queue_is_503_with_retry_after_and_sigterm_finishes_the_request_in_flight():
    import concurrent.futures
    s = Server("--queue", "1")
    try:
        held, rest = _hold_a_request(s.port)  # half a body: not in the queue yet
        with httpx.Client(base_url=s.url, timeout=60) as c:
            good(c)  # the held upload takes no place in the queue

            def post(_):
                return c.post("/v1/recognize", content=sample_bytes(), headers={"Content-Type": "image/png"})
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(post, range(32)))
        busy = [a for a in answers if a.status_code == 503]
        assert busy and all(a.headers["Retry-After"] == "1" and "busy" in a.json()["error"] for a in busy)
        assert {a.status_code for a in answers} == {200, 503}
        s.proc.send_signal(signal.SIGTERM)  # while the held request is still being received
        time.sleep(0.5)
        assert s.proc.poll() is None  # it waits for the request in flight
        held.sendall(rest)
        status, _, answer = _answer(held)
        held.close()
        assert status == 200 and answer["faces"][0]["emotion"] == "happy"
        code, out, err = s.proc.wait(timeout=60), s.proc.stdout.read(), s.proc.stderr.read()
        assert code == 0 and "stopped" in out, err
        assert "Traceback" not in err
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def _tiff_claiming(width, height):
    """A 16x16 TIFF whose tags claim width x height (the 6 KB gigapixel TIFF that once killed the server)."""
    import io
    import struct
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(buffer, "TIFF")
    raw = bytearray(buffer.getvalue())
    ifd = struct.unpack("<I", raw[4:8])[0]
    for entry in range(ifd + 2, ifd + 2 + 12 * struct.unpack("<H", raw[ifd:ifd + 2])[0], 12):
        tag = struct.unpack("<H", raw[entry:entry + 2])[0]
        if tag in (256, 257):
            raw[entry + 2:entry + 12] = struct.pack("<HII", 4, 1, width if tag == 256 else height)
    return bytes(raw)


def _webp_claiming(width, height):
    """A 34-byte lossless WebP whose header claims width x height."""
    import io
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, "WEBP", lossless=True)
    raw = bytearray(buffer.getvalue())
    bits = int.from_bytes(raw[21:25], "little") & ~((1 << 28) - 1)
    raw[21:25] = (bits | (width - 1) | ((height - 1) << 14)).to_bytes(4, "little")
    return bytes(raw)


def test_bombs_of_every_format_are_413_before_decoding_and_the_server_stays_small(server, client):
    before = server.rss_mb()
    for kind, raw, size in (("tiff", _tiff_claiming(32768, 32768), "32768x32768"),
                            ("webp", _webp_claiming(16383, 16383), "16383x16383"),
                            ("tiff", _tiff_claiming(14142, 14142), "14142x14142")):
        answer = client.post("/v1/recognize", content=raw, headers={"Content-Type": f"image/{kind}"})
        assert answer.status_code == 413 and size in answer.json()["error"], answer.text
        assert "\n" not in answer.json()["error"]
    assert server.rss_mb() - before < 50, (before, server.rss_mb())
    good(client)


def test_stalled_uploads_hold_no_place_and_are_dropped_after_the_timeout():
    """Slowloris: 40 connections send 2 bytes of a body and stall; normal clients are still served,
    and each stalled one is answered 408 once its body has stalled for --body-timeout."""
    s = Server("--queue", "4", "--body-timeout", "2")
    stalled = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            sock.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 5000\r\n\r\n\x89P")
            stalled.append(sock)
        time.sleep(0.5)
        with httpx.Client(base_url=s.url, timeout=60) as c:
            for _ in range(3):
                good(c)
        status, _, answer = _answer(stalled[0])
        assert status == 408 and "stalled" in answer["error"]
        code, out, err = s.stop()
        assert code == 0 and "Traceback" not in err, err
    finally:
        for sock in stalled:
            sock.close()
        if s.proc.poll() is None:
            s.proc.kill()


def test_disconnects_and_huge_headers_leave_no_traceback_and_bounded_memory():
    s = Server()
    try:
        body = sample_bytes()
        for cut in (10, len(body) // 2):  # mid-body
            with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
                sock.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:cut])
        for _ in range(3):  # mid-inference: the whole request sent, the answer never read
            with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
                sock.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        before = s.rss_mb()
        floods = []
        for _ in range(10):  # header lines of 4 MB each: the parser refuses them long before
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Flood: ")
            with contextlib.suppress(OSError):
                for _ in range(64):
                    sock.sendall(b"a" * (64 << 10))
            floods.append(sock)
        assert s.rss_mb() - before < 40, (before, s.rss_mb())
        for sock in floods:
            sock.close()
        with httpx.Client(base_url=s.url, timeout=60) as c:
            good(c)
            head = c.head("/")
            assert head.status_code == 200 and head.content == b""
        time.sleep(0.5)
        code, out, err = s.stop()
        assert code == 0 and "Traceback" not in err and "Exception" not in err, err
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_the_token_can_come_from_a_file_or_the_environment(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("fr0m-a-file\n")
    for args, env in ((["--token-file", str(secret)], {}), ([], {"FERKIT_TOKEN": "fr0m-a-file"})):
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "serve.py"), "--port", "0", *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        try:
            line = proc.stdout.readline()
            assert "token required" in line, line
            url = line.split(" on ")[1].split("/ ")[0]
            with httpx.Client(base_url=url, timeout=60) as c:
                assert c.get("/v1/models").status_code == 401
                assert c.get("/v1/models", headers={"Authorization": "Bearer fr0m-a-file"}).status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            proc.stdout.close()
            proc.stderr.close()


def test_the_token_rules():
    s = Server("--token", "s3cret", "--cors", "http://example.org")
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            assert c.get("/v1/health").json()["auth"] is True  # health stays open for probes
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                for answer in (c.post("/v1/recognize", content=sample_bytes(), headers={"Content-Type": "image/png", **headers}),
                               c.get("/v1/models", headers=headers)):
                    assert answer.status_code == 401 and "Bearer" in answer.json()["error"]
            ok = c.post("/v1/recognize", content=sample_bytes(),
                        headers={"Content-Type": "image/png", "Authorization": "Bearer s3cret",
                                 "Origin": "http://example.org"})
            assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://example.org"
            other = c.get("/v1/health", headers={"Origin": "http://elsewhere.org"})
            assert "access-control-allow-origin" not in other.headers
        code, out, err = s.stop()
        assert code == 0, err
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_cors_is_off_unless_asked(client):
    answer = client.get("/v1/health", headers={"Origin": "http://example.org"})
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize("args, phrase", [
    (["--host", "0.0.0.0"], "give --token TOKEN"),
    (["--host", "192.168.1.7", "--token", " "], "--token is empty"),
    (["--model", "nope"], "no shipped model 'nope'"),
    (["--checkpoint", "/nonexistent/m.tflite"], "no such file or folder"),
    (["--port", "70000"], "--port must be"),
    (["--workers", "0"], "at least 1"),
    (["--token-file", "/nonexistent/token"], "not a regular file"),
    (["--body-timeout", "0"], "--body-timeout must be"),
])
def test_bad_options_are_one_line_errors(args, phrase):
    proc = run_script("serve.py", *args)
    assert proc.returncode == 2 and phrase in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_taken_port_is_a_one_line_error(server):
    proc = run_script("serve.py", "--port", server.port, process=True)
    assert proc.returncode == 2 and "choose another with --port" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr



def test_workers_share_the_port_and_stop_together():
    s = Server("--workers", "2")
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            deadline = time.time() + 60
            while time.time() < deadline:  # the workers load their models after the port is bound
                try:
                    if c.get("/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            for _ in range(4):
                good(c)
        children = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2, children
        code, out, err = s.stop()
        assert code == 0 and "stopped" in out, err
        deadline = time.time() + 10
        while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in children):
            time.sleep(0.2)
        left = {pid: open(f"/proc/{pid}/cmdline").read() for pid in children if os.path.exists(f"/proc/{pid}")}
        assert not left, left
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
