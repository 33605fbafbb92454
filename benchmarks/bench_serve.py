"""serve.py under load over loopback, against Recognizer.recognize in process on the same photos.

    python benchmarks/bench_serve.py [--clients 16] [--seconds 60] [--requests 10000]

Photos: 640x480 JPEGs, each holding one real face (samples/astronaut.png or matplotlib's
grace_hopper.jpg, scaled and placed differently).  Prints, measured in one run:
  1. in process: Recognizer.recognize on the decoded bytes (what the server does), photos/s, median ms;
  2. one request at a time, warm: median ms, and its difference from (1)'s median;
  3. --clients concurrent clients posting for --seconds: answers by status, p50 and p99 latency,
     photos/s, and its ratio to (1);
  4. the server's resident memory after the first 100 requests and after --requests.
Run it with nothing else on the machine: the clients share its cores with the server.
"""
import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def photos():
    """Eight 640x480 JPEGs (bytes), one face each."""
    from matplotlib import cbook
    sources = [cv2.imread(os.path.join(ROOT, "samples", "astronaut.png")),
               cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    out = []
    for k in range(8):
        source = sources[k % 2]
        side = 300 + 40 * (k // 2)
        scaled = cv2.resize(source, (side * source.shape[1] // source.shape[0], side))[:, :640]
        canvas = np.full((480, 640, 3), 100, np.uint8)
        x, y = (20 + 60 * k) % max(1, 640 - scaled.shape[1] + 1), (480 - side) // 2
        canvas[y:y + side, x:x + scaled.shape[1]] = scaled[:, :640 - x]
        out.append(cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def in_process(images, seconds=10):
    """Recognizer on the JPEG bytes, decoded as the server decodes them -> (photos/s, median ms, faces per photo)."""
    from ferkit import Recognizer
    from ferkit.photos import decode_image
    recognizer = Recognizer()
    faces = [len(recognizer.analyse(decode_image(raw))[0]) for raw in images]  # warm-up, and a check
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        for raw in images:
            t = time.perf_counter()
            recognizer.analyse(decode_image(raw))
            times.append(time.perf_counter() - t)
    return len(times) / (time.perf_counter() - start), 1000 * statistics.median(times), faces


def start_server():
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "serve.py"), "--port", "0"], stdout=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    return proc, line.split(" on ")[1].split("/ ")[0]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def post(client, raw):
    return client.post("/v1/recognize", content=raw, headers={"Content-Type": "image/jpeg"})


async def load(url, images, clients, seconds):
    """clients tasks posting photos for seconds -> (latencies of 200s, {status: count}, elapsed)."""
    latencies, statuses = [], {}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one(k):
            i = k
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                answer = await client.post("/v1/recognize", content=images[i % len(images)],
                                           headers={"Content-Type": "image/jpeg"})
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                elif answer.status_code == 503:
                    await asyncio.sleep(float(answer.headers.get("Retry-After", 1)))
                i += clients
        start = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(clients)))
        return latencies, statuses, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--requests", type=int, default=10000, help="for the memory figure")
    args = parser.parse_args()
    images = photos()
    rate, median_ms, faces = in_process(images)
    print(f"photos: {len(images)} JPEGs of 640x480, {sum(faces)} faces found in them")
    print(f"1. in process (Recognizer on the decoded bytes): {rate:.1f} photos/s, median {median_ms:.2f} ms")
    proc, url = start_server()
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            for k in range(100):  # the server's first 100 requests: warm-up, and memory's first figure
                assert post(client, images[k % len(images)]).status_code == 200
            first = rss_mb(proc.pid)
            times = []
            for k in range(200):
                t = time.perf_counter()
                answer = post(client, images[k % len(images)])
                times.append(time.perf_counter() - t)
                assert answer.status_code == 200
            single = 1000 * statistics.median(times)
            print(f"2. one request at a time, warm: median {single:.2f} ms ({single - median_ms:+.2f} ms against in process)")
            latencies, statuses, elapsed = asyncio.run(load(url, images, args.clients, args.seconds))
            served = len(latencies)
            p50, p99 = (1000 * float(np.percentile(latencies, q)) for q in (50, 99))
            print(f"3. {args.clients} clients for {elapsed:.0f} s: answers {dict(sorted(statuses.items()))}; "
                  f"p50 {p50:.0f} ms, p99 {p99:.0f} ms; {served / elapsed:.1f} photos/s = "
                  f"{served / elapsed / rate:.2f} of in process")
            bad = {s: n for s, n in statuses.items() if s >= 500 and s != 503}
            print(f"   5xx other than 503: {sum(bad.values())}")
            total = 300 + sum(statuses.values())
            rest = max(0, args.requests - total)
            if rest:  # up to --requests in all, as fast as the server goes
                asyncio.run(load_count(url, images, args.clients, rest))
            last = rss_mb(proc.pid)
            print(f"4. server memory after its first 100 requests {first:.0f} MB, after {total + rest:,} {last:.0f} MB "
                  f"({last - first:+.1f} MB)")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


async def load_count(url, images, clients, n):
    """n more requests from clients tasks."""
    left = [n]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def one(k):
            while left[0] > 0:
                left[0] -= 1
                await client.post("/v1/recognize", content=images[(k + left[0]) % len(images)],
                                  headers={"Content-Type": "image/jpeg"})
        await asyncio.gather(*(one(k) for k in range(clients)))


if __name__ == "__main__":
    main()
