"""Load, soak and limits test of ``fakescope serve`` on loopback: requests/s, latency percentiles, errors by
status, /healthz under load, peak RSS.

Starts ``fakescope serve`` itself (127.0.0.1, a free port, in a subprocess), sends POST /v1/detect from
``--clients`` concurrent clients for ``--duration`` seconds while probing /healthz, then stops the server. A soak
adds a share of malformed uploads (``--malformed``, mutants from fakescope.forensics.mutate) and of
decompression bombs (``--bombs``: a 49-Mpx PNG of about 50 KB), and ``--slow`` connections that trickle their
headers; ``--burst K`` first sends K such bombs at once (the memory test). ``--busy N`` keeps N other processes
spinning meanwhile (CPU contention, for ``--torch-threads``).

    python bench/serve.py --model tiny --clients 8 --duration 30 --docs
    python bench/serve.py --model tiny --clients 4 --duration 120 --malformed 0.1 --bombs 0.05 --slow 50 --burst 8 --docs

``tiny`` is an untrained ELA-CNN checkpoint built on the fly (the serving path costs the same whatever the weights).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from fakescope.forensics.mutate import mutants

HOST = "127.0.0.1"  # loopback only: this benchmark never sends traffic anywhere else


@dataclass
class Run:
    model: str
    torch_threads: int
    clients: int
    duration_s: float
    image: str
    malformed: float = 0.0
    bombs: float = 0.0
    slow: int = 0
    busy: int = 0
    load_s: float = 0.0
    requests: int = 0
    errors: int = 0
    rps: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    healthz_ms: dict[str, float] = field(default_factory=dict)
    burst: dict[str, object] = field(default_factory=dict)
    peak_rss_mb: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tiny_checkpoint(folder: Path) -> Path:
    import torch

    from fakescope.checkpoint import CheckpointMeta, save_checkpoint
    from fakescope.registry import create_detector

    torch.manual_seed(0)
    model, pre = create_detector("ela-cnn")
    return save_checkpoint(folder / "tiny-ela.safetensors", model.eval(), CheckpointMeta("ela-cnn", pre))


def test_image(size: tuple[int, int]) -> bytes:
    """A photo-like JPEG (gradients plus noise), the same for every request."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / (w - 1), yy * 255 / (h - 1), (xx + yy) * 127 / (w + h - 2)], axis=2)
    arr = np.clip(base + np.random.default_rng(0).normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class Server:
    """``fakescope serve`` on loopback (its uvicorn limits included), configured through FAKESCOPE_* variables."""

    def __init__(self, model: str, port: int, torch_threads: int = 0):
        self.url = f"http://{HOST}:{port}"
        self.port = port
        env = {**os.environ, "FAKESCOPE_MODEL": model, "FAKESCOPE_TORCH_THREADS": str(torch_threads)}
        env.pop("FAKESCOPE_API_KEY", None)
        cmd = [sys.executable, "-m", "fakescope", "serve", "--host", HOST, "--port", str(port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 600.0) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with code {self.proc.returncode}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    return time.perf_counter() - start
                if r.json().get("error"):
                    raise RuntimeError(r.json()["error"])
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server not ready in time")

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values) * 1000.0
    return {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in (50, 95, 99)} | {"max": round(float(arr.max()), 1)}


def bomb_png(side: int = 7000) -> bytes:
    """A grey ``side`` x ``side`` PNG (49 Mpx by default, under the server's 50-Mpx limit) of about 50 KB."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Payloads:
    """What the clients send: the valid image, or with the given shares a malformed file or a bomb."""

    valid: bytes
    bomb: bytes
    malformed: list[bytes]
    p_malformed: float
    p_bomb: float

    def pick(self, rng: np.random.Generator) -> tuple[str, bytes]:
        x = rng.random()
        if x < self.p_malformed:
            return "malformed", self.malformed[int(rng.integers(len(self.malformed)))]
        if x < self.p_malformed + self.p_bomb:
            return "bomb", self.bomb
        return "valid", self.valid


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)  # "<kind> <status>"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: str, seconds: float | None = None) -> None:
        with self.lock:
            self.statuses[f"{kind} {status}"] += 1
            if seconds is not None:
                self.latencies.append(seconds)


def client_loop(url: str, payloads: Payloads, deadline: float, tally: Tally, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with httpx.Client(timeout=120) as client:
        while time.perf_counter() < deadline:
            kind, data = payloads.pick(rng)
            start = time.perf_counter()
            try:
                r = client.post(url + "/v1/detect", files={"file": (f"{kind}.bin", data, "application/octet-stream")})
            except httpx.HTTPError as err:
                tally.add(kind, type(err).__name__)
                continue
            ok = r.status_code == 200 and r.json()["fake_probability"] is not None
            tally.add(kind, str(r.status_code), time.perf_counter() - start if kind == "valid" and ok else None)


def health_loop(url: str, stop: threading.Event, tally: Tally) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.wait(0.2):
            start = time.perf_counter()
            try:
                ok = client.get(url + "/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                tally.health.append(time.perf_counter() - start)
            else:
                tally.add("healthz", "failed")


def slow_loop(port: int, stop: threading.Event, n: int, tally: Tally) -> None:
    """``n`` connections sending one header line every 0.5 s; each one the server closes is reopened."""
    socks: list[socket.socket | None] = [None] * n
    while not stop.wait(0.5):
        for i in range(n):
            try:
                if socks[i] is None:
                    socks[i] = socket.create_connection((HOST, port), timeout=5)
                    socks[i].sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")
                else:
                    socks[i].sendall(b"X-Slow: 1\r\n")
            except OSError:  # closed by the server's header deadline
                tally.add("slow", "closed by server")
                socks[i].close() if socks[i] is not None else None
                socks[i] = None
    for sock in socks:
        if sock is not None:
            sock.close()


def burst(server: Server, payload: bytes, k: int) -> dict[str, object]:
    """``k`` bombs at once (each 49 Mpx decoded is about 150 MB): what they get and the server's peak RSS."""
    statuses: Counter = Counter()

    def one() -> None:
        try:
            r = httpx.post(server.url + "/v1/detect", files={"file": ("bomb.png", payload, "image/png")}, timeout=600)
            statuses[str(r.status_code)] += 1
        except httpx.HTTPError as err:
            statuses[type(err).__name__] += 1

    threads = [threading.Thread(target=one) for _ in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"uploads": k, "statuses": dict(statuses), "peak_rss_mb": server.peak_rss_mb()}


def is_error(key: str) -> bool:
    """A failure: a valid upload not scored (503, the server full, is reported but is the documented answer), any
    500-599 but 503, a transport error, a failed /healthz."""
    kind, status = key.split(" ", 1)
    if kind == "slow" or status == "503":
        return False
    return kind == "healthz" or not status.isdigit() or status.startswith("5") or (kind == "valid" and status != "200")


def load_test(server: Server, run: Run, payloads: Payloads) -> Run:
    for _ in range(3):  # warm-up: first-call allocations, lazy imports
        httpx.post(server.url + "/v1/detect", files={"file": ("w.jpg", payloads.valid, "image/jpeg")}, timeout=300)
    tally, stop = Tally(), threading.Event()
    deadline = time.perf_counter() + run.duration_s
    spin = f"import time\nend = {time.time() + run.duration_s}\nwhile time.time() < end:\n    pass\n"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(run.busy)]
    helpers = [threading.Thread(target=health_loop, args=(server.url, stop, tally))]
    if run.slow:
        helpers.append(threading.Thread(target=slow_loop, args=(server.port, stop, run.slow, tally)))
    workers = [threading.Thread(target=client_loop, args=(server.url, payloads, deadline, tally, i))
               for i in range(run.clients)]
    start = time.perf_counter()
    for t in helpers + workers:
        t.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    stop.set()
    for t in helpers:
        t.join()
    for b in busy:
        b.wait()
    valid_ok = tally.statuses["valid 200"]
    run.requests = sum(n for key, n in tally.statuses.items() if key.split()[0] in ("valid", "malformed", "bomb"))
    run.errors = sum(n for key, n in tally.statuses.items() if is_error(key))
    run.rps = round(run.requests / elapsed, 2)
    run.statuses = dict(sorted(tally.statuses.items()))
    run.latency_ms, run.healthz_ms = percentiles(tally.latencies), percentiles(tally.health)
    run.peak_rss_mb = server.peak_rss_mb()
    assert valid_ok == len(tally.latencies)
    return run


def bench_model(model: str, args: argparse.Namespace, payloads: Payloads, tmp: Path) -> Run:
    name = str(tiny_checkpoint(tmp)) if model == "tiny" else model
    run = Run(model=model, torch_threads=args.torch_threads, clients=args.clients, duration_s=args.duration,
              image=f"{args.size}x{args.size} JPEG", malformed=args.malformed, bombs=args.bombs, slow=args.slow,
              busy=args.busy)
    server = Server(name, free_port(), args.torch_threads)
    try:
        run.load_s = round(server.wait_ready(), 1)
        if args.burst:
            run.burst = burst(server, payloads.bomb, args.burst)
        return load_test(server, run, payloads)
    finally:
        server.stop()


def markdown(runs: list[Run], command: str) -> str:
    header = ("| model | torch threads | clients | malformed / bombs / slow / busy | requests | errors | req/s | "
              "valid p50 / p95 / p99 ms | /healthz p50 / p95 / max ms | peak RSS MB |")
    rows = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lat, hz = r.latency_ms, r.healthz_ms
        threads = r.torch_threads or "auto"
        rows.append(f"| {r.model} | {threads} | {r.clients} | {r.malformed:g} / {r.bombs:g} / {r.slow} / {r.busy} | "
                    f"{r.requests} | {r.errors} | {r.rps} | {lat.get('p50')} / {lat.get('p95')} / {lat.get('p99')} | "
                    f"{hz.get('p50')} / {hz.get('p95')} / {hz.get('max')} | {r.peak_rss_mb} |")
    lines = [f"Command: `{command}`", "", *rows, ""]
    for r in runs:
        lines.append(f"- {r.model}, threads {r.torch_threads or 'auto'}: statuses {r.statuses}"
                     + (f"; burst of {r.burst['uploads']} bombs at once: {r.burst['statuses']}, peak RSS "
                        f"{r.burst['peak_rss_mb']} MB" if r.burst else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="'tiny', 'default', a detector name or a checkpoint path")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per model")
    parser.add_argument("--torch-threads", type=int, default=0, help="FAKESCOPE_TORCH_THREADS (0: automatic)")
    parser.add_argument("--size", type=int, default=256, help="side of the square test JPEG")
    parser.add_argument("--malformed", type=float, default=0.0, help="share of malformed uploads")
    parser.add_argument("--bombs", type=float, default=0.0, help="share of 49-Mpx decompression-bomb uploads")
    parser.add_argument("--slow", type=int, default=0, help="connections trickling their headers")
    parser.add_argument("--burst", type=int, default=0, help="first send this many bombs at once")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning on the CPU meanwhile")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--docs", action="store_true", help="print the markdown table for docs/benchmarks/serve.md")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 0 < args.duration <= 1800 or not 0 <= args.slow <= 500 \
            or not 0 <= args.burst <= 32 or not 0 <= args.busy <= 8 or args.malformed + args.bombs > 1:
        parser.error("bounded runs only: --clients 1..64, --duration up to 1800 s, --slow up to 500, --burst up to 32, "
                     "--busy up to 8, --malformed + --bombs at most 1")
    payloads = Payloads(test_image((args.size, args.size)), bomb_png(), [c.data for c in mutants(200, seed=1)],
                        args.malformed, args.bombs)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.model or ["tiny"]:
            run = bench_model(model, args, payloads, Path(tmp))
            runs.append(run)
            print(json.dumps(asdict(run)), flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    if args.docs:
        print(markdown(runs, "python " + " ".join(["bench/serve.py", *sys.argv[1:]])))
    if any(r.errors for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
