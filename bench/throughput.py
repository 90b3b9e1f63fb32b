"""End-to-end scan throughput (decode + preprocess + model) per backend, the JPEG codec bound, and scan memory.

    python bench/throughput.py --model CKPT [--model CKPT ...] [--n 900] [--workers 2] [--memory 1000,20000] [--write]

On a fixed set of real JPEGs from the shared data (the first n/3 files of casia1/real, faces140k/real and
diffusiondb/real), each model is scanned through ``fakescope.inference.scan.scan`` as eager PyTorch with batch 1,
eager PyTorch batched, ONNX Runtime fp32 and ONNX Runtime int8 (static, calibrated on 32 of the images). The codec
bound is the same pipeline with the same workers doing only decode + JPEG re-encode + decode (what an ELA input
costs before any model). Memory: peak anonymous PSS (proportional set size) of ``fakescope scan`` (main process + workers, sampled every 0.1 s) on
folders of 1,000 and 20,000 JPEGs made by re-encoding shared images in a temporary folder, deleted afterwards.
--write puts the tables into docs/benchmarks/speed.md under "## Throughput". ``--sessions`` prints instead each model's
scan rate under three ONNX Runtime session set-ups (all cores spinning, the cores the workers leave, all cores
sleeping when idle). ``--provenance`` prints instead folder-scan files/s with and without provenance reading (and --write
puts it under "## Provenance reading"). ``--stages`` prints instead the CPU time per
image of each step (one process, one thread): decode, codec bound, ELA difference, contrast, the model's whole
preparation and the model itself through ONNX Runtime, and the ceiling they put on "share of the codec bound".

    python bench/throughput.py --release a74871e [--n 300] [--repeats 5] [--startup] [--write]

``--release REF`` compares this tree with a git worktree of REF (the previous release), both run in the same bench as
separate processes of the same Python: ``fakescope --help``, ``fakescope models`` and the cold start of ``fakescope scan one.jpg``
(process start to the printed result, warm disk cache and bytecode; median wall and CPU seconds of --repeats, the trees taking
turns; ``--startup``: only these), the end-to-end ``fakescope scan`` of the same n
files (automatic workers; process start included) and steady images/s inside one process (detector loaded and
warmed up, then ``scan()`` of the n files with --workers), each for the default's ONNX fp32 and its static int8 (the
same int8 file for both trees: bench/int8.py builds it); ratios this tree / REF, the largest probability difference
between the trees, and the JPEG decode bound (decode alone through the scan's workers). Written under "## Fast
start and steady scanning".
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _common import REPO, data_root, write_section
from PIL import Image

from fakescope.compress.quantize import quantize_onnx_static
from fakescope.forensics.ela import resave_jpeg
from fakescope.forensics.io import load_image
from fakescope.inference.detector import Detector, available_cores
from fakescope.inference.kinds.onnx import OnnxDetector, make_session
from fakescope.inference.onnx import default_onnx_path, onnx_twin
from fakescope.inference.scan import iter_prepared, scan

log = logging.getLogger("bench.throughput")
SOURCES = ("casia1/real", "faces140k/real", "diffusiondb/real")


def bench_files(n: int) -> list[Path]:
    """A fixed set: the first n/3 JPEGs (sorted by name) of each source folder."""
    files: list[Path] = []
    for src in SOURCES:
        jpegs = sorted(p for p in (data_root() / src).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        files += jpegs[: n // len(SOURCES)]
    return files


class CodecOnly:
    """A scan preparer doing what an ELA input costs in codec work: re-encode at JPEG q90 and decode again."""

    def to_array(self, img: Image.Image) -> np.ndarray:
        resave_jpeg(img, 90).load()
        return np.zeros(1, np.uint8)


class DecodeOnly:
    """A scan preparer that only finishes decoding (the JPEG decode bound of an RGB model's scan)."""

    def to_array(self, img: Image.Image) -> np.ndarray:
        img.load()
        return np.zeros(1, np.uint8)


def ms_per_image(fn, items: list) -> float:
    start = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - start) / len(items) * 1000


def stage_times(ckpt: str, files: list[Path]) -> str:
    """CPU milliseconds per image of each scan step, one process and one thread, and the ceiling they imply."""
    import torch

    from fakescope.forensics.ela import ela_difference, scale_contrast

    torch.set_num_threads(1)
    det = Detector.load(ckpt, device="cpu")
    fp32 = onnx_twin(det)
    int8 = int8_twin(det, fp32, files)
    imgs = [load_image(f) for f in files]
    diffs = [ela_difference(i) for i in imgs]
    arrays = [det.preparer.to_array(i) for i in imgs]
    t = {"decode": ms_per_image(load_image, files),
         "codec bound (decode + q90 encode + decode)": ms_per_image(lambda f: resave_jpeg(load_image(f)), files),
         "ELA difference (q90 encode + decode + difference)": ms_per_image(ela_difference, imgs),
         "contrast lookup": ms_per_image(scale_contrast, diffs),
         "decode + preparation": ms_per_image(lambda f: det.preparer.to_array(load_image(f)), files)}
    batches = [arrays[i:i + 32] for i in range(0, len(arrays), 32)]
    for name, onnx_det in (("fp32", fp32), ("int8", int8)):
        one_thread = OnnxDetector.from_onnx(onnx_det.onnx_path, threads=1)
        one_thread.predict_batch(batches[0])  # warm-up: the first run prepares the kernels' weight layouts
        t[f"model (ONNX Runtime {name}, batch 32)"] = min(  # best of 3: single passes vary by up to 1.5x here
            ms_per_image(one_thread.predict_batch, batches) * len(batches) / len(arrays) for _ in range(3))
    lines = [f"{det.name} ({det.preprocess.input_mode} {det.preprocess.size}), {len(files)} files, 1 thread:"]
    lines += [f"  {k}: {v:.2f} ms/image" for k, v in t.items()]
    codec, prep = t["codec bound (decode + q90 encode + decode)"], t["decode + preparation"]
    for name in ("fp32", "int8"):
        model = t[f"model (ONNX Runtime {name}, batch 32)"]
        lines.append(f"  ceiling with every core busy, {name}: {codec / (prep + model):.0%} of the codec bound "
                     f"(free ELA arithmetic: {codec / (codec + model):.0%})")
    return "\n".join(lines)


def codec_bound(files: list[Path], workers: int, preparer: object | None = None) -> float:
    """Files/s of decode + re-encode + decode alone (or what ``preparer`` does), through the scan's own worker
    pipeline."""
    start = time.perf_counter()
    n = sum(1 for item in iter_prepared(files, preparer or CodecOnly(), workers) if item.error is None)
    return n / (time.perf_counter() - start)


def scan_rate(files: list[Path], detector: Detector, batch_size: int, workers: int) -> float:
    """End-to-end files/s of a scan (worker start-up included, after a short warm-up scan)."""
    list(scan(files[:8], detector, batch_size, workers=0))
    start = time.perf_counter()
    n = sum(1 for r in scan(files, detector, batch_size, workers) if r.error is None)
    return n / (time.perf_counter() - start)


def provenance_rows(ckpt: str, workers: int, batch_size: int, n: int, rounds: int) -> list[dict]:
    """Folder-scan files/s without and with provenance reading, on the bench JPEGs and on the camera originals
    (large JPEGs with EXIF thumbnails: the reader's most expensive case). The two settings alternate, ``rounds``
    scans each, and the median of each is compared, so a shared machine's drift hits both alike."""
    det = Detector.load(ckpt, device="cpu", backend="auto")  # what `fakescope scan` uses
    sets = {f"{n} real JPEGs ({', '.join(SOURCES)})": bench_files(n),
            "camera originals (shared cameras/real, EXIF and thumbnails)": sorted((data_root() / "cameras" / "real").iterdir())}
    rows = []
    for name, files in sets.items():
        list(scan(files[:8], det, batch_size, workers=0, provenance=True))  # warm-up: model, c2pa-python
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for with_prov in (False, True):
                start = time.perf_counter()
                done = sum(1 for r in scan(files, det, batch_size, workers, provenance=with_prov) if r.error is None)
                rates[with_prov].append(done / (time.perf_counter() - start))
        off, on = float(np.median(rates[False])), float(np.median(rates[True]))
        rows.append({"files": name, "n": len(files), "without": off, "with": on, "ratio": on / off,
                     "runs": {str(k): v for k, v in rates.items()}, **provenance_cpu(files, det)})
        log.info("%s: %.1f files/s without provenance, %.1f with (x%.3f)", name, off, on, on / off)
    return rows


def provenance_cpu(files: list[Path], det: Detector) -> dict:
    """CPU ms per file (this process, one thread) of what a decode worker does without provenance (read, decode,
    prepare) and of what reading provenance adds (the reader, given the decoded pixels): a figure the machine's
    load does not move, unlike files/s."""
    import torch

    from fakescope.forensics.io import open_image
    from fakescope.forensics.provenance import read_provenance

    torch.set_num_threads(1)
    datas = [p.read_bytes() for p in files]
    start = time.process_time()
    images = [open_image(d) for d in datas]
    for img in images:
        det.preparer.to_array(img)
    worker = time.process_time() - start
    start = time.process_time()
    for d, img in zip(datas, images):
        read_provenance(d, decoded=img)
    reader = time.process_time() - start
    return {"worker_cpu_ms": worker / len(files) * 1000, "reader_cpu_ms": reader / len(files) * 1000}


def provenance_markdown(rows: list[dict], args: argparse.Namespace, load: tuple) -> str:
    lines = [f"Command: `cd bench && python throughput.py {' '.join(sys.argv[1:])}`", "",
             f"`fakescope scan`'s pipeline (backend auto, {args.workers} decode workers, batch {args.batch_size}), "
             f"{args.rounds} scans with and {args.rounds} without provenance, alternating; medians. {os.cpu_count()} "
             f"cores, load average {load[0]:.1f} before / {load[1]:.1f} after (shared machine).", "",
             "CPU columns: one process, one thread, per file: decode and prepare (a worker's job without provenance) "
             "and what the reader adds (given the decoded pixels).", "",
             "| files | n | files/s without provenance | with | with / without | worker CPU ms/file | reader CPU "
             "ms/file | reader / worker |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['files']} | {r['n']} | {r['without']:.1f} | {r['with']:.1f} | {r['ratio']:.3f} | "
              f"{r['worker_cpu_ms']:.1f} | {r['reader_cpu_ms']:.2f} | {r['reader_cpu_ms'] / r['worker_cpu_ms']:.1%} |"
              for r in rows]
    return "\n".join(lines)


def int8_twin(detector: Detector, fp32: OnnxDetector, files: list[Path]) -> OnnxDetector:
    """The ONNX int8 model, calibrated on 32 of the bench images (cached next to the fp32 export)."""
    path = default_onnx_path(detector, "int8")
    if not path.is_file():
        calibration = np.stack([detector.prepare(load_image(p)) for p in files[:: max(1, len(files) // 32)][:32]])
        quantize_onnx_static(fp32.onnx_path, path, calibration, detector.meta)
    return OnnxDetector.from_onnx(path, name=detector.name)


def model_rows(ckpt: str, files: list[Path], workers: int, batch_size: int) -> list[dict]:
    torch_det = Detector.load(ckpt, device="cpu")
    fp32 = onnx_twin(torch_det)
    variants = [("eager PyTorch, batch 1", torch_det, 1), (f"eager PyTorch, batch {batch_size}", torch_det, batch_size),
                ("ONNX Runtime fp32", fp32, batch_size), ("ONNX Runtime int8", int8_twin(torch_det, fp32, files), batch_size)]
    rows = []
    for name, det, bs in variants:
        rate = scan_rate(files, det, bs, workers)
        rows.append({"model": f"{torch_det.meta.architecture} {torch_det.preprocess.input_mode} "
                              f"{torch_det.preprocess.size}", "variant": name, "images_per_s": rate,
                     "vs_batch1": rate / rows[0]["images_per_s"] if rows else 1.0})
        log.info("%s / %s: %.1f images/s", rows[-1]["model"], name, rate)
    return rows


def session_rows(ckpt: str, files: list[Path], workers: int, batch_size: int) -> list[dict]:
    """Scan files/s of a model's ONNX fp32 and int8 exports under each session set-up a scan could pair with busy
    decode workers; the detector is given a fixed session (no ``onnx_path``), so the scan does not swap it."""
    det = Detector.load(ckpt, device="cpu")
    fp32 = onnx_twin(det)
    cores = available_cores()
    setups = {f"{cores} threads, spinning (ONNX Runtime's default)": (cores, True),
              f"{max(1, cores - workers)} thread(s), the cores the workers leave": (max(1, cores - workers), True),
              f"{cores} threads, sleeping when idle (what a scan uses)": (cores, False)}
    rows = []
    for precision, onnx_det in (("fp32", fp32), ("int8", int8_twin(det, fp32, files))):
        for setup, (threads, spinning) in setups.items():
            fixed = OnnxDetector(make_session(onnx_det.onnx_path, threads, spinning), det.meta, det.name)
            rate = scan_rate(files, fixed, batch_size, workers)
            rows.append({"model": f"{det.meta.architecture} {precision}", "session": setup, "images_per_s": rate})
            log.info("%s / %s: %.1f images/s", rows[-1]["model"], setup, rate)
    return rows


def make_jpeg_folder(sources: list[Path], folder: Path, n: int, side: int = 160) -> None:
    """``n`` distinct JPEGs: the sources shrunk to ``side`` px and re-encoded at varying quality."""
    folder.mkdir(parents=True, exist_ok=True)
    thumbs = []
    for p in sources:
        img = load_image(p)
        img.thumbnail((side, side))
        thumbs.append(img)
    for i in range(n):
        thumbs[i % len(thumbs)].save(folder / f"f{i:06d}.jpg", quality=60 + (i // len(thumbs)) % 40)


def tree_pss_kb(pid: int) -> int:
    """Anonymous memory (proportional set size) of a process and all its descendants (Linux /proc), in kB. Pages
    the forked workers share with the main process count once, as RSS summed over processes would not; mapped
    libraries are left out, since their share depends on how many other processes on the machine map them."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(rollup.split("\nPss_Anon:")[1].split()[0])
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def peak_scan_memory(folder: Path, ckpt: str, workers: int, out: Path) -> dict:
    cmd = [sys.executable, "-c", "from fakescope.cli import app; app()", "scan", str(folder), "--model", ckpt,
           "--format", "jsonl", "--output", str(out), "--backend", "onnx", "--workers", str(workers)]
    start, peak = time.perf_counter(), 0
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        peak = max(peak, tree_pss_kb(proc.pid))
        time.sleep(0.1)
    if proc.returncode != 0:
        raise RuntimeError(f"scan failed: {proc.stderr.read()[-2000:]}")
    n = out.read_bytes().count(b"\n")
    return {"files": n, "peak_pss_mb": peak / 1024, "seconds": time.perf_counter() - start}


def memory_rows(sources: list[Path], ckpt: str, workers: int, sizes: list[int]) -> list[dict]:
    """Peak scan memory for each folder size; the folders live in a temporary directory removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="fakescope-bench-"))
    try:
        big = tmp / "large"
        make_jpeg_folder(sources, big, max(sizes))
        rows = []
        for n in sizes:
            folder = big if n == max(sizes) else tmp / f"set{n}"
            if folder != big:
                folder.mkdir()
                for name in sorted(os.listdir(big))[:n]:
                    os.link(big / name, folder / name)
            rows.append(peak_scan_memory(folder, ckpt, workers, tmp / f"out{n}.jsonl"))
            log.info("memory: %s", rows[-1])
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def markdown(rows: list[dict], mem: list[dict], bound: float, args: argparse.Namespace, load: tuple) -> str:
    setting = (f"{len(bench_files(args.n))} real JPEGs ({', '.join(SOURCES)}), {args.workers} decode workers, "
               f"{os.cpu_count()} cores; load average {load[0]:.1f} before / {load[1]:.1f} after (the machine is "
               "shared: figures are lower bounds of what an idle machine does).")
    lines = [f"Command: `python bench/throughput.py {' '.join(sys.argv[1:])}`", "", setting, "",
             f"Codec bound (decode + JPEG q90 re-encode + decode, same workers; mean of a run before and after the "
             f"models): **{bound:.1f} images/s**", "",
             "| model | variant | images/s | x eager batch 1 | of codec bound |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['variant']} | {r['images_per_s']:.1f} | {r['vs_batch1']:.2f}x | "
              f"{r['vs_codec']:.0%} |" for r in rows]
    if mem:
        lines += ["", "Peak anonymous memory (PSS) of `fakescope scan --backend onnx` (main process + workers, sampled every 0.1 s):", "",
                  "| files | peak PSS MB | seconds | files/s |", "|---|---|---|---|"]
        lines += [f"| {m['files']:,} | {m['peak_pss_mb']:.0f} | {m['seconds']:.0f} | {m['files'] / m['seconds']:.0f} |"
                  for m in mem]
        lines += ["", f"Peak memory ratio {max(mem, key=lambda m: m['files'])['peak_pss_mb'] / min(mem, key=lambda m: m['files'])['peak_pss_mb']:.3f}"]
    return "\n".join(lines)


#: Steady images/s inside one process: load, warm up on 8 files, then time ``scan()`` of every file (one per line
#: of argv[2]). Uses only API both trees have.
STEADY = """
import sys, time
from fakescope.inference.detector import Detector
from fakescope.inference.scan import scan
model, listing, workers, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = open(listing).read().splitlines()
det = Detector.load(model, device="cpu", backend="onnx")
list(scan(files[:8], det, batch, workers=0))
start = time.perf_counter()
n = sum(1 for r in scan(files, det, batch, workers) if r.error is None)
print(n / (time.perf_counter() - start))
"""
CLI = "from fakescope.cli import app; app()"


@contextlib.contextmanager
def release_tree(ref: str) -> Iterator[Path]:
    """A detached git worktree of ``ref`` in a temporary folder, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="fakescope-release-"))
    tree = tmp / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def run_in(tree: Path, args: list[str], cache: Path) -> tuple[float, str, float]:
    """(wall seconds, stdout, CPU seconds of all its threads) of ``python -c ARGS`` with ``tree``'s sources first on the path. Bytecode is written
    (to a folder of the bench's cache) and read as an installed package's is, whatever PYTHONDONTWRITEBYTECODE says:
    without it every start compiles every module of the tree again (0.05-0.1 s of a one-image scan here)."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "PYTHONPATH": str(tree / "src"),
           "FAKESCOPE_CACHE": str(cache), "PYTHONPYCACHEPREFIX": str(cache / "pycache")}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    res = subprocess.run([sys.executable, "-c", *args], env=env, capture_output=True, text=True)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(f"{tree}: {' '.join(args[1:4])} failed: {res.stderr[-2000:]}")
    return seconds, res.stdout, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def startup_rows(trees: dict[str, Path], measures: dict[str, list[str]], cache: Path, repeats: int) -> list[dict]:
    """For each measure, the median wall seconds and the median CPU seconds (every thread; what a loaded machine
    moves least) of each tree, the trees taking turns run by run so a shared machine's drift hits both alike."""
    rows = []
    for measure, args in measures.items():
        runs: dict[str, list[tuple]] = {t: [] for t in trees}
        for i in range(repeats + 1):  # the first round warms up: disk cache, the release's first export
            for t, tree in trees.items():
                wall, _, cpu = run_in(tree, args, cache)
                if i:
                    runs[t].append((wall, cpu))
        rows.append({"measure": f"{measure}, s", **{t: statistics.median(w for w, _ in r) for t, r in runs.items()}})
        rows.append({"measure": f"{measure}, CPU s", **{t: statistics.median(c for _, c in r) for t, r in runs.items()}})
    return rows


def scan_scores(tree: Path, folder: Path, model: str, cache: Path) -> tuple[float, dict[str, float]]:
    """(wall seconds, path -> probability) of one ``fakescope scan`` of ``folder`` (automatic workers)."""
    out = cache / f"scan-{abs(hash((str(tree), model)))}.jsonl"
    seconds, _, _ = run_in(tree, [CLI, "scan", str(folder), "--model", model, "--format", "jsonl", "--output", str(out)],
                        cache)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return seconds, {r["path"]: r["fake_probability"] for r in rows if r["error"] is None}


def release_rows(trees: dict[str, Path], files: list[Path], models: dict[str, str], args: argparse.Namespace,
                 cache: Path) -> list[dict]:
    """Every measure for every tree; each row holds {tree: value}."""
    folder, listing = cache / "files", cache / "files.txt"
    folder.mkdir(exist_ok=True)
    for i, f in enumerate(files):
        (folder / f"{i:04d}-{f.name}").symlink_to(f)
    listing.write_text("\n".join(str(p) for p in sorted(folder.iterdir())))
    one = str(sorted(folder.iterdir())[-1])
    rows = startup_rows(trees, {"fakescope --help": [CLI, "--help"],
                                "fakescope scan one.jpg (cold start)": [CLI, "scan", one, "--format", "json"],
                                "fakescope models": [CLI, "models", "--format", "json"]},
                        cache, args.repeats)
    for precision, model in models.items():
        scans = {t: scan_scores(tree, folder, model, cache) for t, tree in trees.items()}
        rows.append({"measure": f"fakescope scan of {len(files)} files, {precision}, images/s (end to end)",
                     **{t: len(scans[t][1]) / scans[t][0] for t in trees}, "max_dp": _max_difference(scans)})
        rows.append({"measure": f"steady scan(), {precision}, {args.workers} workers, images/s",
                     **{t: float(run_in(tree, [STEADY, model, str(listing), str(args.workers), str(args.batch_size)],
                                        cache)[1]) for t, tree in trees.items()}})
        log.info("%s", rows[-2:])
    return rows


def _max_difference(scans: dict[str, tuple[float, dict[str, float]]]) -> float:
    (_, a), (_, b) = scans.values()
    if set(a) != set(b):
        raise RuntimeError("the two trees scored different files")
    return max(abs(a[k] - b[k]) for k in a)


def release_section(args: argparse.Namespace) -> str:
    from int8 import int8_model

    files = bench_files(args.n)
    fp32 = Detector.load("default", backend="onnx", device="cpu")
    models = {} if args.startup else {"fp32": "default", "int8": str(int8_model(fp32, 32).onnx_path)}
    load_before = os.getloadavg()[0]
    cache = Path(tempfile.mkdtemp(prefix="fakescope-bench-cache-"))
    try:
        with release_tree(args.release) as old:
            trees = {f"release {args.release}": old, "this tree": REPO}
            decode_before = 0.0 if args.startup else codec_bound(files, args.workers, DecodeOnly())
            rows = release_rows(trees, files, models, args, cache)
            decode = 0.0 if args.startup else (decode_before + codec_bound(files, args.workers, DecodeOnly())) / 2
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return release_markdown(rows, list(trees), decode, args, (load_before, os.getloadavg()[0]))


def release_markdown(rows: list[dict], names: list[str], decode: float, args: argparse.Namespace,
                     load: tuple[float, float]) -> str:
    old, new = names
    files = "" if args.startup else f"{args.n} real JPEGs ({', '.join(SOURCES)}); "
    lines = [f"Command: `python bench/throughput.py {' '.join(sys.argv[1:])}`", "",
             f"{files}{os.cpu_count()} cores shared with other work (load average {load[0]:.1f} before, {load[1]:.1f} "
             "after): every figure is noisy. The two trees were measured in the same run: taking turns run by run for "
             "the start-up rows, one after the other for each scan. Seconds are medians of "
             f"{args.repeats} runs after a warm-up run; CPU seconds count every thread of the process.", "",
             f"| measure | {old} | {new} | ratio (this tree / release; for seconds, release / this tree) | "
             "largest probability difference |", "|---|---|---|---|---|"]
    for r in rows:
        ratio = r[old] / r[new] if r["measure"].endswith(" s") else r[new] / r[old]
        dp = f"{r['max_dp']:.1e}" if "max_dp" in r else ""
        lines.append(f"| {r['measure']} | {r[old]:.2f} | {r[new]:.2f} | {ratio:.2f}x | {dp} |")
    steady = [r for r in rows if r["measure"].startswith("steady")]
    if not steady:  # --startup
        return "\n".join(lines)
    lines += ["", f"JPEG decode bound (decode alone through the scan's {args.workers} workers; mean of a run before and "
              f"after): **{decode:.1f} images/s**; steady scanning reaches "
              + ", ".join(f"{r['measure'].split(', ')[1]} {r[new] / decode:.0%}" for r in steady) + " of it."]
    return "\n".join(lines)


def compression_rows(model: str, data: list[str], out: Path, eval_samples: int, finetune: bool) -> list[dict]:
    """Every compressed variant of ``model``, measured on the validation split of ``data`` (same images)."""
    from fakescope.compress.prune import prune_checkpoint
    from fakescope.compress.quantize import export_int8, quantize_checkpoint

    stem = Path(model).stem
    pruned = prune_checkpoint(model, 0.3, out / f"{stem}-pruned30.safetensors", data=data,
                              eval_samples=eval_samples).rows
    rows = pruned + quantize_checkpoint(model, out / f"{stem}-int8.safetensors", data, eval_samples).rows[1:]
    rows += export_int8(model, data, 64, out / f"{stem}-int8.onnx", eval_samples=eval_samples).rows[1:]
    if finetune:
        rows += prune_checkpoint(model, 0.5, out / f"{stem}-pruned50-ft.safetensors", data=data, finetune_data=data, epochs=1,
                                 eval_samples=eval_samples).rows[1:]
        rows[-1]["variant"] += " + 1 epoch fine-tune"
    arch = Detector.load(model).meta.architecture
    return [{**r, "variant": f"{arch}: {r['variant']}"} for r in rows]


def distill_rows(teacher: str, data: list[str], out: Path, eval_samples: int, epochs: int, per_class: int) -> list[dict]:
    from fakescope.compress.distill import DistillConfig, distill

    cfg = DistillConfig(teacher=teacher, student="ela-cnn", data=data, out=str(out / "distilled-ela-cnn.safetensors"), epochs=epochs,
                        max_per_class=per_class, eval_samples=eval_samples, lr=3e-4)
    return [{**r, "variant": f"distil: {r['variant']}"} for r in distill(cfg).rows]


def compression_section(args: argparse.Namespace) -> str:
    from fakescope.compress.report import markdown_table

    data = [str(data_root() / s) for s in args.compression_data.split(",")]
    out = Path(tempfile.mkdtemp(prefix="fakescope-compress-"))
    try:
        rows = [r for i, m in enumerate(args.model)
                for r in compression_rows(m, data, out, args.eval_samples, finetune=i == 0)]
        if args.distill_epochs:
            rows += distill_rows(args.model[-1], data, out, args.eval_samples, args.distill_epochs, args.distill_per_class)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    setting = (f"Validation split of {', '.join(args.compression_data.split(','))} (at most {args.eval_samples} "
               "images, the same for every variant); img/s is the model alone on preprocessed arrays, batch 32, "
               f"load average {os.getloadavg()[0]:.1f}. MB is the file as saved, gzip MB the same file "
               "compressed (pruned zeros only pay off there).")
    return "\n".join([f"Command: `python bench/throughput.py {' '.join(sys.argv[1:])}`", "", setting, "",
                      markdown_table(rows)])


def draft_rows(folder: Path, factors: tuple[int, ...] = (2, 1)) -> list[dict]:
    """Pillow's JPEG draft mode (DCT scaling while decoding) on large photos: for each ``factor``, decode at the
    smallest scale that still covers factor x the model's input side, then prepare as usual; ms per image (one
    process) and the largest change of the default's probability against the full decode."""
    det = Detector.load("default", backend="onnx", device="cpu")
    side = det.preprocess.size
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))

    def prepared(factor: int | None) -> tuple[np.ndarray, float]:
        start, arrays = time.perf_counter(), []
        for f in files:
            with Image.open(f) as img:
                if factor:
                    img.draft("RGB", (side * factor, side * factor))
                arrays.append(det.prepare(img.convert("RGB")))
        return np.stack(arrays), (time.perf_counter() - start) / len(files) * 1000

    full, full_ms = prepared(None)
    p_full = det.predict_arrays(full)
    rows = [{"decode": "full", "ms": full_ms, "max_dp": 0.0}]
    for factor in factors:
        arrays, ms = prepared(factor)
        rows.append({"decode": f"draft to >= {factor} x {side} px", "ms": ms,
                     "max_dp": float(np.abs(det.predict_arrays(arrays) - p_full).max())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=None, help="Checkpoint or detector name (repeat).")
    parser.add_argument("--release", default=None,
                        help="Instead: compare this tree with a worktree of this git ref (start-up, --help, scans).")
    parser.add_argument("--repeats", type=int, default=5, help="--release: runs per start-up time (median).")
    parser.add_argument("--startup", action="store_true",
                        help="--release: only `fakescope --help`, `fakescope models` and the one-image cold start (no scans).")
    parser.add_argument("--draft", action="store_true",
                        help="Instead: Pillow's JPEG draft mode on the large camera photos (time, probability change).")
    parser.add_argument("--n", type=int, default=900,
                        help="Bench images (a third from each source; 0: memory only). Worker start-up (~0.3 s) "
                             "is part of every row, so small sets flatter the slower ones.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory", default="1000,20000", help="Folder sizes for the memory test ('' to skip).")
    parser.add_argument("--memory-model", default=None, help="Model for the memory test (default: the first).")
    parser.add_argument("--write", action="store_true", help="Write the section into docs/benchmarks/speed.md.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the raw figures here.")
    parser.add_argument("--compression-data", default=None,
                        help="Comma-separated shared sets: instead of throughput, measure every compressed variant.")
    parser.add_argument("--eval-samples", type=int, default=400)
    parser.add_argument("--distill-epochs", type=int, default=0, help="Also distil the last --model into an ELA-CNN.")
    parser.add_argument("--distill-per-class", type=int, default=300)
    parser.add_argument("--stages", action="store_true", help="Print CPU time per step instead (first --model).")
    parser.add_argument("--provenance", action="store_true",
                        help="Print instead folder-scan files/s without and with provenance reading (first --model).")
    parser.add_argument("--rounds", type=int, default=3, help="--provenance: scans per setting.")
    parser.add_argument("--sessions", action="store_true",
                        help="Print scan files/s per ONNX Runtime session set-up instead (every --model).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.release or args.compression_data:  # a section of its own instead of the throughput tables
        text = release_section(args) if args.release else compression_section(args)
        print(text)
        if args.write and args.release:
            write_section("Fast start and steady scanning", text)
        elif args.write:
            write_section("Compression", text)
        return
    if args.draft:
        rows = draft_rows(data_root() / "cameras" / "real")
        print("\n".join(["| decode (cameras/real) | ms per image (decode + preparation) | largest probability change |",
                         "|---|---|---|"] + [f"| {r['decode']} | {r['ms']:.1f} | {r['max_dp']:.4f} |" for r in rows]))
        return
    if not args.model:
        parser.error("--model is required (or --release REF)")
    if args.stages:
        print(stage_times(args.model[0], bench_files(args.n)))
        return
    if args.provenance:
        load = os.getloadavg()[0]
        rows = provenance_rows(args.model[0], args.workers, args.batch_size, args.n, args.rounds)
        text = provenance_markdown(rows, args, (load, os.getloadavg()[0]))
        print(text)
        if args.write:
            write_section("Provenance reading", text)
        return
    if args.sessions:
        rows = [r for m in args.model for r in session_rows(m, bench_files(args.n), args.workers, args.batch_size)]
        print("\n".join(["| model | session during a scan with workers | images/s |", "|---|---|---|"]
                        + [f"| {r['model']} | {r['session']} | {r['images_per_s']:.1f} |" for r in rows]))
        return
    load_before = os.getloadavg()[0]
    files = bench_files(args.n)
    rows: list[dict] = []
    bound = float("nan")
    if args.n:
        # The bound is measured before and after the model rows and their mean used: a shared machine drifts.
        before = codec_bound(files, args.workers)
        log.info("codec bound: %.1f images/s", before)
        rows = [r for ckpt in args.model for r in model_rows(ckpt, files, args.workers, args.batch_size)]
        after = codec_bound(files, args.workers)
        bound = (before + after) / 2
        log.info("codec bound: %.1f images/s before the models, %.1f after", before, after)
        for r in rows:
            r["vs_codec"] = r["images_per_s"] / bound
    sizes = [int(s) for s in args.memory.split(",") if s]
    mem = memory_rows(bench_files(240), args.memory_model or args.model[0], args.workers, sizes) if sizes else []
    text = markdown(rows, mem, bound, args, (load_before, os.getloadavg()[0]))
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"codec_bound": bound, "rows": rows, "memory": mem}, indent=2))
    if args.write:
        write_section("Throughput", text)


if __name__ == "__main__":
    main()
