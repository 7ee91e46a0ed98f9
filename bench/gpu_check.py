"""Does this machine's GPU speed up generation? CPU and GPU tokens/s, side by side.

    python bench/gpu_check.py [--model smollm2] [--tokens 128] [--gpu-layers 100]

Resolves the model (pulls it if it is not here yet), then loads it twice, each time in a
fresh process, exactly as a worker does (``worker.engine.load_engine``): with
``GPU_LAYERS=0`` and with ``--gpu-layers``. Each run generates up to ``--tokens`` tokens
greedily from the same prompt and reports load time, time to first token and decode
tokens/s. The GPU run only happens when ``nvidia-smi`` lists a GPU; whether the GPU was
really used is judged from the GPU memory the run took (per process, or the device's
total before and after) and llama.cpp's own start-up lines, never from speed alone.

GPU workers need ctransformers' CUDA build: ``pip install "ctransformers[cuda]"`` (the
CUDA 12 runtime and cuBLAS as pip wheels; the NVIDIA driver comes from the host).
Each run is a separate process because a CUDA failure can abort the process it happens in.

Exit status: 0 when the check ran (with or without a GPU), 1 when a GPU is present but
the GPU run failed or did not use it, 2 when the model cannot be resolved.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROMPT = "Write a long, detailed story about a lighthouse keeper and the sea."
#: A long prompt, as an internet answer's evidence makes one: its first token is timed.
LONG_PROMPT_TOKENS = 1500
EVIDENCE = (
    "The lighthouse at Skerry Point was built in 1871 of granite quarried on the island. "
    "Its lamp burned paraffin until 1934, when an electric light replaced it. "
)
#: llama.cpp start-up lines that show layers went to a GPU.
GPU_LOG_MARKERS = ("offloaded", "cuBLAS", "CUDA", "VRAM", "ggml_init_cublas")
#: GPU memory growth that means the model went to the GPU (the CUDA context alone is more).
MIN_GROWTH_MIB = 50


def nvidia_gpus() -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists (empty without a driver or GPU)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.startswith("GPU ")]


def _query(*fields: str) -> str | None:
    """``nvidia-smi`` output for ``fields`` (``--query-...=...``, ``--format=...``); None
    when it is missing or fails."""
    try:
        return subprocess.run(
            ["nvidia-smi", *fields], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_memory_used_mib() -> dict[str, int]:
    """Memory in use per visible GPU index, in MiB (empty when unknown)."""
    out = _query("--query-gpu=index,memory.used", "--format=csv,noheader,nounits") or ""
    used = {}
    for line in out.splitlines():
        index, _, mib = line.partition(",")
        if mib.strip().isdigit():
            used[index.strip()] = int(mib)
    return used


def process_gpu_memory_mib(pid: int) -> int | None:
    """GPU memory held by ``pid`` per ``nvidia-smi`` (None when it does not list it, as
    inside containers, where it shows host process ids)."""
    out = _query("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits") or ""
    for line in out.splitlines():
        found, _, mib = line.partition(",")
        if found.strip() == str(pid) and mib.strip().isdigit():
            return int(mib)
    return None


def cuda_wheels_installed() -> bool:
    """Whether ``ctransformers[cuda]``'s CUDA runtime and cuBLAS wheels are installed."""
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("nvidia.cuda_runtime", "nvidia.cublas")
        )
    except ModuleNotFoundError:
        return False


def measure(*, gpu_layers: int, tokens: int, threads: int, probe_gpu: bool) -> dict[str, Any]:
    """Load the model and generate greedily (runs in the child process)."""
    from shared.settings import get_settings
    from worker.engine import ChatMessage, SamplingParams, load_engine

    settings = get_settings().model_copy(
        update={
            "gpu_layers": gpu_layers,
            "threads": threads,
            "max_new_tokens": tokens,
        }
    )
    started = time.perf_counter()
    engine = load_engine(settings)
    loaded = time.perf_counter()
    held = process_gpu_memory_mib(os.getpid()) if probe_gpu else None
    device_memory = gpu_memory_used_mib() if probe_gpu else {}
    prompt = engine.render_prompt([ChatMessage("user", PROMPT)])
    params = SamplingParams.from_settings(settings, temperature=0.0, max_new_tokens=tokens)
    first = None
    began = time.perf_counter()
    pieces = []
    with engine.stream(prompt, params) as stream:
        for piece in stream:
            if first is None:
                first = time.perf_counter()
            pieces.append(piece)
        ended = time.perf_counter()
        completion = stream.completion_tokens
    decode_s = ended - first if first is not None else 0.0
    long_ttft = _first_token_s(engine, settings, LONG_PROMPT_TOKENS)
    return {
        "gpu_layers": gpu_layers,
        "threads": threads,
        "load_s": round(loaded - started, 3),
        "prompt_tokens": len(prompt),
        "completion_tokens": completion,
        "ttft_s": round(first - began, 4) if first is not None else None,
        "tokens_per_s": round((completion - 1) / decode_s, 1)
        if completion > 1 and decode_s
        else None,
        "long_prompt_tokens": long_ttft[0],
        "long_prompt_ttft_s": round(long_ttft[1], 4),
        "gpu_memory_mib": held,
        "device_memory_mib": device_memory,
        "text": "".join(pieces)[:80],
    }


def _first_token_s(engine: Any, settings: Any, tokens: int) -> tuple[int, float]:
    """Seconds to the first token of a prompt of about ``tokens`` tokens (and its length)."""
    from worker.engine import ChatMessage, SamplingParams

    unit = len(engine.tokenize(EVIDENCE))
    text = EVIDENCE * max(1, tokens // unit) + "When was the lighthouse built?"
    prompt = engine.render_prompt([ChatMessage("user", text)])
    params = SamplingParams.from_settings(settings, temperature=0.0, max_new_tokens=1)
    began = time.perf_counter()
    with engine.stream(prompt, params) as stream:
        next(iter(stream), None)
        return len(prompt), time.perf_counter() - began


def gpu_description() -> dict[str, str]:
    """The first GPU's name, driver and memory per ``nvidia-smi`` (empty without one)."""
    out = _query("--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")
    fields = [field.strip() for field in out.splitlines()[0].split(",")] if out else []
    return dict(zip(("name", "driver", "memory"), fields, strict=False))


def ctransformers_library(gpu: bool) -> str | None:
    """The ctransformers library a load with (``gpu``) or without GPU layers would use."""
    try:
        from ctransformers.lib import find_library

        return str(find_library(gpu=gpu))
    except (ImportError, OSError):
        return None


def run_child(args: argparse.Namespace, gpu_layers: int, *, probe_gpu: bool) -> dict[str, Any]:
    """One measurement in a fresh process; its stderr (llama.cpp's log) comes back too."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--gpu-layers",
        str(gpu_layers),
        "--tokens",
        str(args.tokens),
        "--threads",
        str(args.threads),
    ]
    if probe_gpu:
        command.append("--probe-gpu")
    env = {**os.environ, "GPU_LAYERS": str(gpu_layers)}
    if args.model:
        env["MODEL"] = args.model
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=args.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0 or not lines:
        result["error"] = (
            f"exit status {done.returncode}: "
            f"{done.stderr.strip().splitlines()[-1:] or ['no output']}"
        )
    result["log"] = [
        line
        for line in done.stderr.splitlines()
        if any(marker in line for marker in GPU_LOG_MARKERS)
    ][:10]
    return result


def resolve_model(model: str | None) -> str:
    """Make sure the model is here (pull it once if not); returns its name."""
    from shared.modelstore import ModelNotFoundError, pull, resolve
    from shared.settings import get_settings

    settings = get_settings()
    if model:
        settings = settings.model_copy(update={"model": model})
    try:
        return resolve(settings).name
    except ModelNotFoundError:
        print(f"pulling {settings.model} (once)…", file=sys.stderr)
        return pull(settings.model, settings=settings, progress=False).name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--model", help="model to load (default: MODEL, 'smollm2')")
    parser.add_argument("--tokens", type=int, default=128, help="tokens to generate per run")
    parser.add_argument(
        "--gpu-layers",
        type=int,
        default=100,
        help="layers to offload in the GPU run (more than the model has: all)",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-gpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(
            json.dumps(
                measure(
                    gpu_layers=args.gpu_layers,
                    tokens=args.tokens,
                    threads=args.threads,
                    probe_gpu=args.probe_gpu,
                )
            )
        )
        return 0

    try:
        model = resolve_model(args.model)
    except Exception as exc:  # any failure to get the model ends the check, explained
        print(f"gpu_check: cannot resolve the model: {exc}", file=sys.stderr)
        return 2
    gpus = nvidia_gpus()
    report: dict[str, Any] = {
        "model": model,
        "gpus": gpus,
        "card": gpu_description() if gpus else {},
        "cpu_count": os.cpu_count(),
        "cuda_wheels": cuda_wheels_installed(),
        "library": {"cpu": ctransformers_library(False), "gpu": ctransformers_library(True)},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    report["cpu"] = run_child(args, 0, probe_gpu=False)
    gpu_used = False
    if not gpus:
        report["gpu_used"] = None
        report["note"] = "no NVIDIA GPU is present (nvidia-smi is missing or lists none): CPU only"
    else:
        before = gpu_memory_used_mib()
        gpu = run_child(args, args.gpu_layers, probe_gpu=True)
        report["gpu"] = gpu
        # The child has exited: compare with what it reported while the model was loaded.
        held = gpu.get("gpu_memory_mib")
        loaded = gpu.get("device_memory_mib") or {}
        grew = max((loaded[i] - before[i] for i in loaded if i in before), default=0)
        gpu["device_memory_growth_mib"] = grew
        offload_logged = any("offload" in line or "VRAM" in line for line in gpu.get("log", []))
        gpu_used = "error" not in gpu and (bool(held) or grew >= MIN_GROWTH_MIB or offload_logged)
        report["gpu_used"] = gpu_used
        cpu_rate, gpu_rate = report["cpu"].get("tokens_per_s"), gpu.get("tokens_per_s")
        if cpu_rate and gpu_rate:
            report["speedup"] = round(gpu_rate / cpu_rate, 2)
        cpu_long, gpu_long = report["cpu"].get("long_prompt_ttft_s"), gpu.get("long_prompt_ttft_s")
        if cpu_long and gpu_long:
            report["long_prompt_speedup"] = round(cpu_long / gpu_long, 2)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, gpu_layers=args.gpu_layers)
    return 1 if gpus and not gpu_used else 0


def _line(run: dict[str, Any]) -> str:
    if "error" in run:
        return f"failed: {run['error']}"
    return (
        f"{run.get('tokens_per_s')} tokens/s ({run.get('completion_tokens')} tokens, "
        f"first token {run.get('ttft_s')} s, load {run.get('load_s')} s; "
        f"first token of a {run.get('long_prompt_tokens')}-token prompt "
        f"{run.get('long_prompt_ttft_s')} s)"
    )


def print_report(report: dict[str, Any], *, gpu_layers: int) -> None:
    print(f"model: {report['model']}")
    print(f"CPU (GPU_LAYERS=0): {_line(report['cpu'])}")
    if not report["gpus"]:
        print(
            "GPU: none. No NVIDIA GPU is present (nvidia-smi is missing or lists no GPU), "
            "so only the CPU number above was measured."
        )
        return
    print(f"GPUs: {'; '.join(report['gpus'])}")
    card = report.get("card") or {}
    if card:
        print(f"  card: {card.get('name')}, driver {card.get('driver')}, {card.get('memory')}")
    print(f"  library: {(report.get('library') or {}).get('gpu')}")
    if not report["cuda_wheels"]:
        print("  ctransformers' CUDA wheels are missing: pip install 'ctransformers[cuda]'")
    gpu = report["gpu"]
    print(f"GPU (GPU_LAYERS={gpu_layers}): {_line(gpu)}")
    if "speedup" in report:
        print(f"speed-up: {report['speedup']}x")
    if "long_prompt_speedup" in report:
        print(f"long prompt's first token: {report['long_prompt_speedup']}x sooner")
    evidence = []
    if gpu.get("gpu_memory_mib"):
        evidence.append(f"the run held {gpu['gpu_memory_mib']} MiB of GPU memory")
    elif gpu.get("device_memory_growth_mib", 0) >= MIN_GROWTH_MIB:
        evidence.append(f"GPU memory in use grew by {gpu['device_memory_growth_mib']} MiB")
    evidence += gpu.get("log", [])[:3]
    if "error" in gpu:
        print("GPU really used: NO: the GPU run failed (above)")
        return
    verdict = "yes" if report["gpu_used"] else "NO: the layers stayed on the CPU"
    print(f"GPU really used: {verdict}" + (f" ({'; '.join(evidence)})" if evidence else ""))


if __name__ == "__main__":
    sys.exit(main())
