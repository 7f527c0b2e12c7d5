"""Runs every (framework, workload, threads[, variant]) benchmark as its own process and
prints one markdown table:

    framework | workload | threads | time | samples/s | GFLOP/s

Each configuration runs in a fresh Python process, so the thread count is fixed before
the framework is imported. Before each run the script waits (up to --max-wait seconds)
until the machine is quiet (other processes use < --idle-threshold of a core), and it
measures how much CPU other processes took while the benchmark ran; a run disturbed by
more than that threshold is retried (up to --retries times) and flagged if it stays noisy.

Usage:
    python run_all.py                         # everything, table on stdout
    python run_all.py --frameworks torch jax  # a subset
    python run_all.py --results RESULTS.md    # also write the full results file
"""

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

import common

HERE = common.HERE

# (framework key, script, workload, variant or None, label)
CONFIGS = [
    ("torch", "bench_torch.py", "A", None, "PyTorch (eager loop)"),
    ("torch", "bench_torch.py", "B", None, "PyTorch (eager step)"),
    ("torch", "bench_torch.py", "C", None, "PyTorch (eager step)"),
    ("jax", "bench_jax.py", "A", None, "JAX (whole loop jitted, lax.scan)"),
    ("jax", "bench_jax.py", "B", None, "JAX (jitted step)"),
    ("jax", "bench_jax.py", "C", None, "JAX (jitted step)"),
    ("tf", "bench_tf.py", "A", "fit", "TensorFlow/Keras (model.fit)"),
    ("tf", "bench_tf.py", "A", "eager", "TensorFlow/Keras (eager GradientTape loop)"),
    ("tf", "bench_tf.py", "B", "tf.function", "TensorFlow/Keras (tf.function step)"),
    ("tf", "bench_tf.py", "B", "xla", "TensorFlow/Keras (tf.function step, XLA)"),
    ("tf", "bench_tf.py", "C", "tf.function", "TensorFlow/Keras (tf.function step)"),
    ("tf", "bench_tf.py", "C", "xla", "TensorFlow/Keras (tf.function step, XLA)"),
]


def cpu_busy_seconds():
    """Total non-idle CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / tick


def background_load(seconds=1.0):
    b0, t0 = cpu_busy_seconds(), time.perf_counter()
    time.sleep(seconds)
    return (cpu_busy_seconds() - b0) / (time.perf_counter() - t0)


def wait_quiet(threshold, max_wait):
    start = time.perf_counter()
    while True:
        load = background_load(3.0)  # 3 quiet seconds in a row
        if load < threshold or time.perf_counter() - start > max_wait:
            return load, time.perf_counter() - start


def run_one(script, workload, threads, variant, repeats):
    cmd = [sys.executable, os.path.join(HERE, script), "--workload", workload,
           "--threads", str(threads), "--repeats", str(repeats)]
    if variant:
        cmd += ["--variant", variant]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, t0 = cpu_busy_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    wall = time.perf_counter() - t0
    busy = cpu_busy_seconds() - busy0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    other = max(0.0, busy - child) / wall  # cores used by other processes meanwhile
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    if result is None:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, other, err
    return result, other, None


def fmt_time(r):
    s = r["seconds"]
    if r["unit"] == "1000 epochs":
        return f"{s * 1e3:.1f} ms / 1000 epochs"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs / step"
    return f"{s * 1e3:.3g} ms / step"


def fmt_num(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frameworks", nargs="+", default=["torch", "jax", "tf"])
    p.add_argument("--workloads", nargs="+", default=["A", "B", "C"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--idle-threshold", type=float, default=0.15,
                   help="max cores other processes may use (default 0.15)")
    p.add_argument("--max-wait", type=float, default=120.0,
                   help="seconds to wait for a quiet machine before each run")
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--json", default=None, help="write raw results here")
    p.add_argument("--results", default=None, help="write a RESULTS.md-style file here")
    args = p.parse_args()

    rows, raw, failures = [], [], []
    for fw, script, wl, variant, label in CONFIGS:
        if fw not in args.frameworks or wl not in args.workloads:
            continue
        for threads in args.threads:
            for attempt in range(args.retries + 1):
                wait_quiet(args.idle_threshold, args.max_wait)
                res, other, err = run_one(script, wl, threads, variant, args.repeats)
                if err or other < args.idle_threshold or attempt == args.retries:
                    break
                print(f"  (noisy: other processes used {other:.2f} cores; retrying)",
                      file=sys.stderr)
            tag = f"{label} {wl} t{threads}"
            if err:
                print(f"FAILED {tag}: {err}", file=sys.stderr)
                failures.append((label, wl, threads, err))
                continue
            res["label"], res["other_load"] = label, other
            res["noisy"] = other >= args.idle_threshold
            raw.append(res)
            print(f"done {tag}: {fmt_time(res)}  (other load {other:.2f} cores)",
                  file=sys.stderr)

    table = markdown_table(raw)
    print(table)
    if failures:
        print("\nFailed:")
        for label, wl, threads, err in failures:
            print(f"- {label} {wl} threads={threads}: {err}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=raw, failures=failures), f, indent=1)
    if args.results:
        write_results(args.results, raw, failures, table)


def markdown_table(raw):
    lines = ["| framework | workload | threads | time | samples/s | GFLOP/s |",
             "|---|---|---:|---:|---:|---:|"]
    for r in raw:
        flag = " ⚠" if r.get("noisy") else ""
        lines.append(f"| {r['label']} | {r['workload']} | {r['threads']} | {fmt_time(r)}{flag} | "
                     f"{fmt_num(r['samples_per_s'])} | {r['gflops']:.2f} |")
    return "\n".join(lines)


def detail_table(raw):
    lines = ["| framework | workload | threads | CPU time / wall | other processes (cores) | check |",
             "|---|---|---:|---:|---:|---|"]
    for r in raw:
        if r["workload"] == "A":
            check = (f"loss[999] = {r['final_loss']:.6f} (fixture {r['ref_final_loss']:.6f}), "
                     f"max abs diff over 1000 epochs {r['max_abs_loss_diff']:.1e}")
        else:
            check = f"{r['steps_per_repeat']} steps per repeat, last loss {r['last_loss']:.4f}"
        lines.append(f"| {r['label']} | {r['workload']} | {r['threads']} | "
                     f"{r['cpu_per_wall']:.2f} | {r['other_load']:.2f} | {check} |")
    return "\n".join(lines)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_results(path, raw, failures, table):
    versions = {}
    for r in raw:
        versions.setdefault(r["framework"], r["version"])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Peer-framework timings",
        "",
        f"Measured {now} by `python run_all.py --results RESULTS.md`.",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores visible, {platform.platform()}",
        f"- Python {platform.python_version()}; "
        + "; ".join(f"{k} {v}" if not v.startswith(k.lower()) else v for k, v in versions.items()),
        f"- {common.FLOP_FORMULA}.",
        "  Per sample: A 4-32-3 = 1088, B 64-128-10 = 40448, C 784-256-10 = 818176 FLOP.",
        "- Time: median of the timed repeats after warm-up/compile. A: one repeat = 1000 full-batch",
        "  epochs from the fixture's initial weights. B, C: one repeat = a block of steps lasting",
        "  about 0.25 s; the time shown is per step.",
        "- ⚠ marks a run during which other processes used ≥ 0.15 cores.",
        "",
        table,
        "",
    ]
    if failures:
        out += ["Failed runs:", ""]
        out += [f"- {label} {wl} threads={t}: {err}" for label, wl, t, err in failures]
        out.append("")
    out += ["## Details", "", detail_table(raw), ""]
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
