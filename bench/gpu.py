"""GPU benchmark (`make bench-gpu`, on a machine with a CUDA GPU): detector ceiling vs the whole pipeline.

(a) YOLOX alone in-process (FP16, CUDA graphs, ``torch.compile``d when the ``gpu`` profile compiles it) at
batch 1, 8, 32, 64 -- the ceiling -- plus the uncompiled graph and each GPU stage: nvJPEG decode, letterbox
and the fused graph (YOLOX + decode + top-k + NMS, what the ``gpu`` profile runs);
(b) the ``pipeline`` ensemble of each profile in ``--profiles`` through a real tritonserver over gRPC, N
cameras each keeping one 1920x1080 JPEG in flight (one thread per camera, spread over client processes);
(c) the ratio (b)/(a) at the same batch size. Prints a markdown table; ``--out DIR`` also saves it.

The ceiling in (a) is the median of short timed bursts; (a) also runs the detector back to back for
``--sustain`` seconds per batch, as long as a pipeline run keeps the GPU busy, and ``nvidia-smi`` samples
the SM clock and power during those runs and during each camera count of (b), so that a clock that drops
under sustained load shows up as such rather than as pipeline overhead.

Detection counts: random weights give every anchor the same score (about 0.25), so no threshold can pick
"tens". In (a) every anchor passes and the fused graph's NMS works on its full ``pre_nms_topk`` (1000)
candidates, the worst case. In (b) ``pre_nms_topk`` is set to ``--target-boxes`` for every profile, so
each frame carries that many boxes into the tracker, as a scene of tens of people would; the graph's
NMS part is then smaller than in production (compare the fused column of (a) with the detector's). The
boxes per frame that the pipeline returned are printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.gpu")


def make_frames(src_dir: Path, count: int, hw: tuple[int, int] = (1080, 1920), quality: int = 90) -> list[bytes]:
    """Upscales the JPEGs of ``src_dir`` to ``hw`` and re-encodes them (torchvision, CPU)."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import decode_jpeg, encode_jpeg

    frames = []
    for path in sorted(src_dir.glob("*.jpg"))[:count]:
        image = decode_jpeg(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8))
        big = F.interpolate(image[None].float(), size=hw, mode="bilinear", align_corners=False)[0]
        frames.append(bytes(encode_jpeg(big.round().clamp(0, 255).to(torch.uint8), quality=quality).numpy()))
    if not frames:
        raise SystemExit(f"no .jpg frames in {src_dir}")
    return frames


def cuda_ms(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` timed with CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_totals(run) -> dict[str, float]:
    """GPU kernel (and copy) name -> total ms over one call of ``run`` (PyTorch's profiler)."""
    import torch
    from torch.autograd import DeviceType

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            totals[event.name[:70]] = totals.get(event.name[:70], 0.0) + event.time_range.elapsed_us() / 1000
    return totals


class GpuSampler:
    """``nvidia-smi`` samples (SM clock MHz, power W) while the block runs; ``summary()`` their means."""

    QUERY = "clocks.sm,power.draw"

    def __init__(self, period_ms: int = 200) -> None:
        self.period_ms = period_ms
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> GpuSampler:
        try:
            self._proc = subprocess.Popen(
                ["nvidia-smi", f"--query-gpu={self.QUERY}", "--format=csv,noheader,nounits", f"-lms={self.period_ms}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
        except OSError:
            log.warning("nvidia-smi not found: no clock samples")
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=5)
        for line in out.splitlines():
            try:
                self.samples.append(tuple(float(v) for v in line.split(",")))  # type: ignore[arg-type]
            except ValueError:
                continue

    def summary(self) -> dict:
        if not self.samples:
            return {}
        clocks, power = zip(*self.samples)
        return {"sm_mhz": statistics.mean(clocks), "min_sm_mhz": min(clocks), "power_w": statistics.mean(power)}


def sustained_fps(fn, batch: int, seconds: float) -> dict:
    """Images/s of ``fn()`` (one batch) run back to back for ``seconds``, with the GPU's clock and power."""
    import torch

    fn()
    torch.cuda.synchronize()
    with GpuSampler() as sampler:
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            for _ in range(4):
                fn()
            runs += 4
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return {"sustained_fps": batch * runs / elapsed, **sampler.summary()}


def in_process(frames: list[bytes], batches: Sequence[int], arch: str, target_boxes: int, sustain: float) -> dict:
    """(a): detector ceiling and stage times per batch; calibrates the thresholds on ``frames``."""
    import torch

    from pipeline_config.render import load_profile
    from pipeline_models.gpu.detector import GraphedDetector, GraphedYolox
    from pipeline_models.gpu.preprocess import decode_images, letterbox_batch

    device = torch.device("cuda")
    buckets = (1, 2, 4, 8, 16, 32, 64)
    compiled = load_profile("gpu").values["compile_detector"]  # the ceiling is the detector the server runs
    runner = GraphedYolox(arch=arch, device=device, buckets=buckets, compiled=compiled)
    uncompiled = GraphedYolox(arch=arch, device=device, buckets=buckets) if compiled else runner
    # Calibration on the real frames.
    images = decode_images(frames, device)
    tensor, meta = letterbox_batch(images, (640, 640))
    raw = runner.infer(tensor)
    scores = (raw[..., 4] * raw[..., 5:].max(dim=2).values).sort(dim=1, descending=True).values
    conf = float(scores[:, target_boxes - 1].mean())
    high = float(scores[:, target_boxes // 2 - 1].mean())
    fused = GraphedDetector(arch=arch, device=device, buckets=buckets, conf_thresh=conf, compiled=compiled)
    served = GraphedDetector(
        arch=arch, device=device, buckets=buckets, conf_thresh=conf, pre_nms_topk=target_boxes, compiled=compiled
    )
    dets = fused.detect(tensor, meta)
    result = {
        "compiled": compiled,
        "conf_thresh": conf,
        "track_thresh": max(high - 0.1, 0.0),  # new tracks need score > track_thresh + 0.1
        "score_max": float(scores[:, 0].mean()),
        "dets_per_frame": float(np.mean([len(s) for _, s in dets])),
        "rows": [],
    }
    eager = GraphedYolox(arch=arch, device=device, buckets=(max(batches),), cuda_graphs=False)
    for b in batches:
        x = torch.randn(b, 3, 640, 640, device=device, dtype=torch.float16)
        data = [frames[i % len(frames)] for i in range(b)]
        idx = torch.arange(b) % len(frames)
        x_real, meta_b = tensor[idx.to(device)], meta[idx]
        row = {
            "batch": b,
            "detector_ms": cuda_ms(lambda: runner.infer(x)),
            "uncompiled_ms": cuda_ms(lambda: uncompiled.infer(x)),
            "eager_ms": cuda_ms(lambda: eager.infer(x), repeats=5),
            "fused_ms": cuda_ms(lambda: fused.detect(x_real, meta_b)),
            "served_ms": cuda_ms(lambda: served.detect(x_real, meta_b)),
            "decode_ms": cuda_ms(lambda: decode_images(data, device), repeats=10),
            "letterbox_ms": cuda_ms(lambda: letterbox_batch(decode_images(data, device), (640, 640)), repeats=10),
        }
        row["letterbox_ms"] -= row["decode_ms"]
        row["detector_fps"] = b * 1000.0 / row["detector_ms"]
        if sustain > 0:
            row["sustained"] = sustained_fps(lambda: runner.infer(x), b, sustain)
        result["rows"].append(row)
        log.info("in-process %s", row)
    del runner, uncompiled, eager, fused, served
    torch.cuda.empty_cache()
    return result


def _camera_worker(url: str, cameras: Sequence[int], frames: list[bytes], t_start: float, t_stop: float, queue) -> None:
    """One client process: a thread per camera, one frame in flight each.

    Each camera puts exactly one ``(records, errors, fatal)`` on ``queue``: ``records`` are
    ``(end, latency_s, boxes)``, ``fatal`` is ``None`` or the text of the exception that stopped it early.
    """

    def run(camera: int) -> None:
        records, errors, fatal = [], 0, None
        try:
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(url)
            k, first = camera, True
            while True:
                now = time.time()
                last = now >= t_stop
                data = np.array([[frames[k % len(frames)]]], dtype=np.object_)
                inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
                inp.set_data_from_numpy(data)
                t0 = time.time()
                try:
                    res = client.infer(
                        "pipeline", [inp], sequence_id=camera, sequence_start=first, sequence_end=last,
                        client_timeout=30.0,
                    )
                    t1 = time.time()
                    if t0 >= t_start and not last:
                        records.append((t1, t1 - t0, int(res.as_numpy("BOXES").shape[1])))
                except grpcclient.InferenceServerException as exc:
                    errors += 1
                    if errors < 3:
                        log.warning("camera %d: %s", camera, exc)
                    if errors >= 50 and not records:
                        raise RuntimeError(f"camera {camera}: {errors} errors, none answered; last: {exc}") from exc
                first, k = False, k + 1
                if last:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the run
            fatal = f"{type(exc).__name__}: {exc}"
        queue.put((records, errors, fatal))

    threads = [threading.Thread(target=run, args=(c,)) for c in cameras]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def collect(queue, workers: Sequence, expected: int, deadline: float) -> list[tuple]:
    """``expected`` camera results from ``queue``; fails fast when a worker dies, a camera fails or time runs out.

    Raises:
        RuntimeError: a client process exited with an error, a camera reported a fatal error, or
            ``deadline`` (``time.time()`` seconds) passed first.
    """
    import queue as queue_module

    results: list[tuple] = []
    while len(results) < expected:
        try:
            item = queue.get(timeout=0.5)
        except queue_module.Empty:
            dead = [w for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"client process exited with code {dead[0].exitcode}") from None
            if all(w.exitcode == 0 for w in workers) and queue.empty():
                raise RuntimeError(f"client processes ended with {len(results)} of {expected} camera results")
            if time.time() > deadline:
                raise RuntimeError(f"timed out with {len(results)} of {expected} camera results") from None
            continue
        if item[2] is not None:
            raise RuntimeError(f"camera failed: {item[2]}")
        results.append(item)
    return results


def through_server(
    frames, counts, profile: str, overrides: dict[str, str], duration, warmup, out_dir: Path
) -> list[dict]:
    """(b): a profile's pipeline in tritonserver, N cameras, one frame in flight each."""
    import tritonclient.grpc as grpcclient

    from bench.triton_stats import model_stats
    from pipeline_config.render import render
    from pipeline_server.server import Ports, TritonServer, free_ports

    repo = render(profile, out_dir / "model_repository", overrides)
    ports = Ports(*free_ports(3))
    log_path = out_dir / "tritonserver.log"
    os.environ.setdefault("PIPELINE_STAGE_LOG", "50")  # gpu_detector logs its own stage times (see stage_line)
    extra = [
        "--cuda-memory-pool-byte-size=0:4294967296",
        "--pinned-memory-pool-byte-size=1073741824",
        "--backend-config=python,shm-default-byte-size=67108864",
        "--backend-config=python,shm-growth-byte-size=67108864",
    ]
    rows = []
    with (
        TritonServer(repo, ports, log_path=log_path, startup_timeout_s=300, extra_args=extra) as server,
        grpcclient.InferenceServerClient(server.grpc_url) as stats_client,
    ):
        ctx = mp.get_context("fork")
        base = 0
        for n in counts:
            try:
                cameras = list(range(base + 1, base + n + 1))
                base += n
                before = model_stats(stats_client)
                log_offset = log_path.stat().st_size
                t_start = time.time() + warmup
                t_stop = t_start + duration
                queue = ctx.Queue()
                procs = min(n, 8)
                workers = [
                    ctx.Process(target=_camera_worker, args=(server.grpc_url, cameras[i::procs], frames, t_start, t_stop, queue))
                    for i in range(procs)
                ]
                for w in workers:
                    w.start()
                sampler = GpuSampler()  # from the end of the warm-up to the last answer
                starter = threading.Timer(max(t_start - time.time(), 0.0), sampler.__enter__)
                starter.start()
                try:
                    results = collect(queue, workers, len(cameras), t_stop + 60.0)
                finally:
                    starter.cancel()
                    starter.join()
                    sampler.__exit__(None, None, None)
                    for w in workers:
                        w.join(timeout=5)
                        if w.is_alive():
                            w.kill()
                after = model_stats(stats_client)
                records = [r for rec, _, _ in results for r in rec]
                lat = np.array([r[1] for r in records]) * 1000
                row = {
                    "cameras": n,
                    "fps": len(records) / duration,
                    "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                    "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
                    "errors": sum(e for _, e, _ in results),
                    "boxes_per_frame": float(np.mean([r[2] for r in records])) if records else 0.0,
                    "stages": {
                        name: {"batch": d.batch, "queue_ms": d.queue_ms, "compute_ms": d.compute_ms}
                        for name, stats in after.items()
                        if (d := stats - before[name]).requests > 0
                    },
                    "gpu_stages": stage_line(log_path, log_offset),
                    "replay_alone": stage_line(log_path, 0, "gpu_detector graph replay alone, ms per bucket:"),
                    "gpu_clock": sampler.summary(),
                }
            except RuntimeError as exc:  # a dead client or server: report what ran, stop here
                log.error("pipeline at %d cameras failed: %s", n, exc)
                rows.append({"cameras": n, "failed": str(exc)})
                break
            log.info("pipeline %s", row)
            rows.append(row)
    return rows


def stage_line(log_path: Path, offset: int, prefix: str = "gpu_detector stages:") -> str:
    """The rest of the last line with ``prefix`` the server logged after ``offset`` ("" if none)."""
    with log_path.open("rb") as f:
        f.seek(offset)
        lines = [line for line in f.read().decode(errors="replace").splitlines() if prefix in line]
    return lines[-1].split(prefix, 1)[1].strip().rstrip('"') if lines else ""


def table(a: dict, b: list[dict], device: str) -> str:
    """The markdown report."""
    ceiling = {r["batch"]: r for r in a["rows"]}
    lines = [
        f"Device: {device}. Random-weight YOLOX-X 640x640 FP16, "
        f"{'torch.compile' if a.get('compiled') else 'uncompiled'}; conf_thresh {a['conf_thresh']:.4g}, "
        f"track_thresh {a['track_thresh']:.4g} (calibrated; {a['dets_per_frame']:.1f} detections/frame after NMS "
        "in-process, pre_nms_topk 1000; (b) caps candidates at --target-boxes).",
        "",
        "(a) in-process, per batch (ms; median of CUDA-event timings):",
        "",
        "| batch | detector graph ms | uncompiled graph ms | eager ms | detector img/s | fused graph ms (det+NMS) "
        "| fused, top-k as served | nvJPEG decode ms | letterbox ms | sustained img/s | sustained SM MHz (min) / W |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in a["rows"]:
        lines.append(
            f"| {r['batch']} | {r['detector_ms']:.2f} | {r.get('uncompiled_ms', float('nan')):.2f} | "
            f"{r['eager_ms']:.2f} | {r['detector_fps']:.0f} | "
            f"{r['fused_ms']:.2f} | {r.get('served_ms', float('nan')):.2f} | {r['decode_ms']:.2f} | {r['letterbox_ms']:.2f} | "
            f"{r.get('sustained', {}).get('sustained_fps', float('nan')):.0f} | {_clock(r.get('sustained', {}))} |"
        )
    lines += [
        "",
        "(b) pipeline through tritonserver over gRPC, 1920x1080 JPEGs, one frame in flight per camera; "
        "(c) ratio to (a) at batch = cameras:",
        "",
        "| profile | cameras | frames/s | p50 ms | p99 ms | errors | boxes/frame | detector img/s (a) | ratio (b)/(a) "
        "| ratio to sustained (a) | SM MHz (min) / W |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in b:
        if "failed" in r:
            lines.append(f"| {r['profile']} | {r['cameras']} | failed: {r['failed']} | | | | | | |")
            continue
        ref = ceiling.get(r["cameras"], {}).get("detector_fps", float("nan"))
        sustained = ceiling.get(r["cameras"], {}).get("sustained", {}).get("sustained_fps", float("nan"))
        lines.append(
            f"| {r['profile']} | {r['cameras']} | {r['fps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['errors']} | {r['boxes_per_frame']:.1f} | {ref:.0f} | {r['fps'] / ref:.1%} | "
            f"{r['fps'] / sustained:.1%} | {_clock(r.get('gpu_clock', {}))} |"
        )
    lines += ["", "Where the time goes (Triton statistics per request: mean batch, queue ms, compute ms):", ""]
    lines += ["| profile | cameras | model: b batch q queue c compute |", "|---|---|---|"]
    for r in b:
        if "failed" not in r:
            cells = [
                f"{m}: b{s['batch']:.1f} q{s['queue_ms']:.1f} c{s['compute_ms']:.1f}"
                for m, s in r["stages"].items() if m not in ("pipeline", "detect")
            ]
            lines.append(f"| {r['profile']} | {r['cameras']} | " + "; ".join(cells) + " |")
    stages = [r for r in b if r.get("gpu_stages")]
    if stages:
        lines += ["", "gpu_detector's own stage times (PIPELINE_STAGE_LOG; the last window of each run):", ""]
        lines += ["| profile | cameras | stages |", "|---|---|---|"]
        lines += [f"| {r['profile']} | {r['cameras']} | {r['gpu_stages']} |" for r in stages]
    replays = {r["profile"]: r["replay_alone"] for r in b if r.get("replay_alone")}
    if replays:
        lines += ["", "gpu_detector's graphs replayed alone in the server at load (ms per bucket):", ""]
        lines += [f"- {profile}: {line}" for profile, line in replays.items()]
    return "\n".join(lines)


def _clock(sample: dict) -> str:
    return f"{sample['sm_mhz']:.0f} ({sample['min_sm_mhz']:.0f}) / {sample['power_w']:.0f}" if sample else "-"


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline_server.child_process import exit_on_sigterm

    exit_on_sigterm()  # a timeout's SIGTERM stops the servers started here too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=Path, required=True, help="folder of source .jpg frames (upscaled to 1080p)")
    parser.add_argument("--count", type=int, default=32, help="frames used")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--cameras", default="1,8,32,64")
    parser.add_argument(
        "--profiles", nargs="+", default=["gpu"],
        help="profiles measured in (b), in order; PROFILE+KEY=VALUE+... adds render values",
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--arch", default="yolox_x")
    parser.add_argument("--target-boxes", type=int, default=40)
    parser.add_argument("--sustain", type=float, default=5.0, help="seconds of back-to-back detector runs per batch in (a)")
    parser.add_argument("--out", type=Path, default=Path("out/bench-gpu"))
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name()
    frames = make_frames(args.frames, args.count)
    log.info("%d frames of %.0f KiB mean", len(frames), np.mean([len(f) for f in frames]) / 1024)
    a = in_process(frames, [int(b) for b in args.batches.split(",")], args.arch, args.target_boxes, args.sustain)
    b: list[dict] = []
    for spec in [] if args.skip_server else args.profiles:
        profile, _, extra = spec.partition("+")  # e.g. gpu+detector_instances=1
        overrides = {
            "conf_thresh": f"{a['conf_thresh']:.6g}",
            "track_thresh": f"{a['track_thresh']:.6g}",
            "pre_nms_topk": str(args.target_boxes),
        }
        overrides.update(pair.split("=", 1) for pair in extra.split("+") if pair)
        rows = through_server(
            frames, [int(c) for c in args.cameras.split(",")], profile, overrides, args.duration, args.warmup,
            args.out / spec.replace("=", "-").replace("+", "_").replace(",", "-"),
        )
        b += [{**row, "profile": spec} for row in rows]
    report = table(a, b, device)
    (args.out / "bench_gpu.md").write_text(report + "\n")
    (args.out / "bench_gpu.json").write_text(json.dumps({"device": device, "a": a, "b": b}, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
