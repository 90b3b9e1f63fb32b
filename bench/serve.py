"""Load test of ``fakescope serve`` on loopback: requests/s, latency percentiles, errors, /healthz under load.

Starts the server itself (uvicorn on 127.0.0.1, a free port, in a subprocess), sends POST /v1/detect from
``--clients`` concurrent clients for ``--duration`` seconds while probing /healthz, then stops the server.

    python bench/serve.py --model tiny --model default --clients 8 --duration 30 --docs

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

HOST = "127.0.0.1"  # loopback only: this benchmark never sends traffic anywhere else


@dataclass
class Run:
    model: str
    torch_threads: int
    clients: int
    duration_s: float
    image: str
    load_s: float = 0.0
    requests: int = 0
    errors: int = 0
    rps: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    healthz_ms: dict[str, float] = field(default_factory=dict)


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
    """``uvicorn --factory fakescope.serve.app:app_from_env`` on loopback, configured through FAKESCOPE_MODEL."""

    def __init__(self, model: str, port: int, torch_threads: int = 0):
        self.url = f"http://{HOST}:{port}"
        env = {**os.environ, "FAKESCOPE_MODEL": model, "FAKESCOPE_TORCH_THREADS": str(torch_threads)}
        env.pop("FAKESCOPE_API_KEY", None)
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "fakescope.serve.app:app_from_env",
               "--host", HOST, "--port", str(port), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, env=env)

    def wait_ready(self, timeout: float = 300.0) -> float:
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


def client_loop(url: str, payload: bytes, deadline: float, latencies: list[float], errors: list[str]) -> None:
    with httpx.Client(timeout=60) as client:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                r = client.post(url + "/v1/detect", files={"file": ("bench.jpg", payload, "image/jpeg")})
                if r.status_code == 200 and r.json()["fake_probability"] is not None:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors.append(str(r.status_code))
            except httpx.HTTPError as err:
                errors.append(type(err).__name__)


def health_loop(url: str, stop: threading.Event, latencies: list[float], errors: list[str]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.wait(0.2):
            start = time.perf_counter()
            try:
                if client.get(url + "/healthz").status_code == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors.append("healthz")
            except httpx.HTTPError:
                errors.append("healthz")


def load_test(server: Server, run: Run, payload: bytes) -> Run:
    for _ in range(3):  # warm-up: first-call allocations, lazy imports
        httpx.post(server.url + "/v1/detect", files={"file": ("w.jpg", payload, "image/jpeg")}, timeout=120)
    latencies: list[float] = []
    health: list[float] = []
    errors: list[str] = []
    stop = threading.Event()
    deadline = time.perf_counter() + run.duration_s
    prober = threading.Thread(target=health_loop, args=(server.url, stop, health, errors))
    workers = [threading.Thread(target=client_loop, args=(server.url, payload, deadline, latencies, errors))
               for _ in range(run.clients)]
    start = time.perf_counter()
    prober.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    stop.set()
    prober.join()
    run.requests, run.errors = len(latencies), len(errors)
    run.rps = round(len(latencies) / elapsed, 2)
    run.latency_ms, run.healthz_ms = percentiles(latencies), percentiles(health)
    return run


def bench_model(model: str, args: argparse.Namespace, payload: bytes, tmp: Path) -> Run:
    name = str(tiny_checkpoint(tmp)) if model == "tiny" else model
    run = Run(model=model, torch_threads=args.torch_threads, clients=args.clients, duration_s=args.duration, image=f"{args.size}x{args.size} JPEG")
    server = Server(name, free_port(), args.torch_threads)
    try:
        run.load_s = round(server.wait_ready(), 1)
        return load_test(server, run, payload)
    finally:
        server.stop()


def markdown(runs: list[Run], command: str) -> str:
    header = "| model | torch threads | clients | requests | errors | req/s | p50 ms | p95 ms | p99 ms | /healthz p50 / p99 / max ms |"
    rows = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lat, hz = r.latency_ms, r.healthz_ms
        threads = r.torch_threads or "default"
        rows.append(f"| {r.model} | {threads} | {r.clients} | {r.requests} | {r.errors} | {r.rps} | {lat.get('p50')} | "
                    f"{lat.get('p95')} | {lat.get('p99')} | {hz.get('p50')} / {hz.get('p99')} / {hz.get('max')} |")
    return f"Command: `{command}`\n\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="'tiny', 'default', a detector name or a checkpoint path")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per model")
    parser.add_argument("--torch-threads", type=int, default=0, help="FAKESCOPE_TORCH_THREADS (0: PyTorch default)")
    parser.add_argument("--size", type=int, default=256, help="side of the square test JPEG")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--docs", action="store_true", help="print the markdown table for docs/benchmarks/serve.md")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 0 < args.duration <= 600:
        parser.error("--clients must be 1..64 and --duration 0..600 s (a bounded test)")
    payload = test_image((args.size, args.size))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.model or ["tiny"]:
            run = bench_model(model, args, payload, Path(tmp))
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
