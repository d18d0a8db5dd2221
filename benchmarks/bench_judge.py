"""hba-judge throughput against a local OpenAI-compatible server with 100 ms latency per request.

Measures (1) judgments per second at 8 / 32 / 64 in flight against the bound concurrency / latency, with
the client's CPU time per judgment (process CPU time of the client process only, which the machine's load
distorts far less than wall-clock) and the share of the bound that CPU alone allows; (2) a fully cached
re-run of 10,000 judgments (in process, and the whole `hba-judge` command); (3) the import time of
`hba_tools.judge` and which heavy modules a cached re-run loads. The server (tests/openai_server.py)
runs in its own process.

`--before DIR` measures another source tree as well (DIR/libs holding hba_core, DIR/tools holding
hba_tools, e.g. `git archive HEAD libs tools schemas | tar -x -C DIR`), alternating the two in one run
so both see the same machine load; the load average is printed at the start and the end.

    python benchmarks/bench_judge.py                  # ~1-2 minutes on an idle machine
    python benchmarks/bench_judge.py --quick          # smaller runs
    python benchmarks/bench_judge.py --before /tmp/hba-before
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LATENCY = 0.1
FREE = ("siq2", "intentqa", "mimeqa")
HEAVY = ("jsonschema", "aiohttp", "openai", "httpx2", "httpx", "asyncio")


def cpu_alone_share(cpu_s_per_request: float, bound_per_s: float) -> float:
    """The share of the concurrency bound the client's own CPU allows: 1 / (CPU s per request x bound rate)."""
    return 1.0 / (cpu_s_per_request * bound_per_s)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def write_inputs(folder: Path, n: int, tag: str) -> tuple[Path, Path]:
    from hba_core.jsonl import write_jsonl

    rows = [
        {
            "id": f"{tag}{i}",
            "dataset": FREE[i % 3],
            "problem": f"<video>\nWhy {i}? Answer briefly.",
            "answer": f"Reason {i}.",
        }
        for i in range(n)
    ]
    preds = [{"id": f"{tag}{i}", "prediction": f"<think>hmm</think>reason {i} ({tag})"} for i in range(n)]
    truth, pred = folder / f"{tag}-truth.jsonl", folder / f"{tag}-pred.jsonl"
    write_jsonl(truth, rows)
    write_jsonl(pred, preds)
    return truth, pred


def run(folder: Path, url: str, tag: str, n: int, concurrency: int, cache: Path | None) -> tuple[float, float]:
    """Judge n samples with whichever hba_core is importable; return (wall seconds, this process's CPU seconds)."""
    from hba_core.judge import prompts
    from hba_core.judge.client import ClientSettings
    from hba_core.judge.run import judge

    truth, pred = folder / f"{tag}-truth.jsonl", folder / f"{tag}-pred.jsonl"
    if not truth.exists():
        write_inputs(folder, n, tag)
    start, cpu = time.perf_counter(), time.process_time()
    summary = judge(
        truth,
        pred,
        folder / f"{tag}-out.jsonl",
        settings=ClientSettings(base_url=url, model="bench", concurrency=concurrency, timeout_s=30),
        api_key="sk-bench",
        variant=prompts.variant("paper"),
        cache_path=cache,
        show_progress=False,
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert summary.by_status["ok"] == n, summary.lines()
    return elapsed, cpu


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process (its hba_core comes from PYTHONPATH); prints one JSON object."""
    try:  # the HTTP library is imported once per process, on the first request: keep it out of the timings
        from hba_core.judge.client import http_library

        http_library()
    except ImportError:  # a tree from before the direct HTTP path
        import openai  # noqa: F401
    folder = Path(args.folder)
    if args.worker == "levels":
        out = []
        for c in args.levels:
            n = c * args.per_slot
            server = process_cpu_s(args.server_pid)
            elapsed, cpu = run(folder, args.url, f"c{c}-{os.getpid()}", n, c, None)
            out.append({"c": c, "n": n, "s": elapsed, "cpu": cpu, "server": process_cpu_s(args.server_pid) - server})
        print(json.dumps(out))
    else:  # cached
        cache = folder / f"cache-{args.label}.sqlite"
        fill, _ = run(folder, args.url, f"cached-{args.label}", args.cached_n, 64, cache)
        again, _ = run(folder, args.url, f"cached-{args.label}", args.cached_n, 64, cache)
        print(json.dumps({"fill": fill, "again": again}))


def _env(tree: Path | None) -> dict[str, str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "OMP_NUM_THREADS": "1"}
    if tree is not None:  # the other tree's packages first on the path (PYTHONPATH beats the editable install)
        env["PYTHONPATH"] = os.pathsep.join([str(tree / "libs"), str(tree / "pkgs")])
    return env


def _sub(args: list[str], tree: Path | None) -> dict | list:
    done = subprocess.run(
        [sys.executable, __file__, *args], env=_env(tree), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cli_cached(folder: Path, url: str, label: str, n: int, tree: Path | None) -> tuple[float, list[str]]:
    """Wall time of the whole hba-judge command on a fully cached run, and the heavy modules it imported."""
    truth, pred = folder / f"cached-{label}-truth.jsonl", folder / f"cached-{label}-pred.jsonl"
    command = [sys.executable, "-X", "importtime", "-m", "hba_tools.judge", "--truth", str(truth), "--pred", str(pred)]
    command += ["--out", str(folder / f"cli-{label}.jsonl"), "--base-url", url, "--model", "bench", "-q"]
    command += ["--cache", str(folder / f"cache-{label}.sqlite")]
    start = time.perf_counter()
    done = subprocess.run(command, env=_env(tree), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or f"{n} from cache, 0 requests" not in done.stderr:
        raise SystemExit(f"hba-judge failed or was not fully cached:\n{done.stderr[-3000:]}")
    loaded = {m.group(1) for m in re.finditer(r"\|\s+([\w.]+)$", done.stderr, re.MULTILINE)}
    return elapsed, [name for name in HEAVY if name in loaded]


def _import_s(tree: Path | None) -> float:
    """Median of 3: the cumulative import time of hba_tools.judge as -X importtime reports it."""
    times = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import hba_tools.judge"],
            env=_env(tree),
            capture_output=True,
            text=True,
            check=True,
        )
        match = re.search(r"\|\s+(\d+) \| hba_tools\.judge$", done.stderr, re.MULTILINE)
        assert match, done.stderr[-500:]
        times.append(int(match.group(1)) / 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", type=Path, default=None, help="another source tree to measure alongside")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per tree [2, 1 with --quick]")
    parser.add_argument("--worker", choices=["levels", "cached"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--label", default="after", help=argparse.SUPPRESS)
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32, 64])
    parser.add_argument("--per-slot", type=int, default=None, help="judgments per concurrency slot [20]")
    parser.add_argument("--cached-n", type=int, default=None)
    parser.add_argument(
        "--parts", default="levels,cached,imports", help="which measurements to run [levels,cached,imports]"
    )
    args = parser.parse_args()
    args.per_slot = args.per_slot or (8 if args.quick else 20)
    args.cached_n = args.cached_n or (2000 if args.quick else 10_000)
    if args.worker:
        worker(args)
        return
    rounds = args.rounds or (1 if args.quick else 2)
    trees: list[tuple[str, Path | None]] = [("after", None)]
    if args.before is not None:
        pkgs = args.before / "pkgs"  # hba_tools lives in tools/ (package-dir): give it its import name
        pkgs.mkdir(exist_ok=True)
        if not (pkgs / "hba_tools").exists():
            (pkgs / "hba_tools").symlink_to(args.before.resolve() / "tools")
        trees.insert(0, ("before", args.before))
    proc, url = start_server(LATENCY)
    load_start = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            print(f"server {url}, latency {LATENCY * 1000:.0f} ms per request; cpu cores {os.cpu_count()}")
            print(f"load average at start: {load_start[0]:.2f} (1 min), {load_start[1]:.2f} (5 min)")
            common = ["--url", url, "--folder", tmp, "--per-slot", str(args.per_slot), "--server-pid", str(proc.pid)]
            common += ["--levels", ",".join(map(str, args.levels))]
            parts = set(args.parts.split(","))
            results: dict[str, list[dict]] = {label: [] for label, _ in trees}
            for _ in range(rounds if "levels" in parts else 0):  # alternate the trees so both see the same load
                for label, tree in trees:
                    results[label] += _sub(["--worker", "levels", *common], tree)  # type: ignore[arg-type]
            print(
                f"\n{'tree':>6} {'concurrency':>11} {'judgments':>9} {'seconds':>8} {'judg/s':>8} {'bound/s':>8} "
                f"{'of bound':>8} {'client CPU ms/judgment':>23} {'client CPU alone allows':>24} {'server CPU ms':>13}"
                f"   (median of {rounds})"
            )
            for label, _ in trees:
                for c in args.levels if "levels" in parts else ():
                    runs = [r for r in results[label] if r["c"] == c]
                    seconds = statistics.median(r["s"] for r in runs)
                    cpu = statistics.median(r["cpu"] for r in runs)
                    server = statistics.median(r.get("server", 0.0) for r in runs)
                    n = runs[0]["n"]
                    rate, bound = n / seconds, c / LATENCY
                    alone = f"{cpu_alone_share(cpu / n, bound):.2f} x bound"
                    print(
                        f"{label:>6} {c:>11} {n:>9} {seconds:>8.2f} {rate:>8.1f} {bound:>8.0f} {rate / bound:>8.0%} "
                        f"{1000 * cpu / n:>23.2f} {alone:>24} {1000 * server / n:>13.2f}"
                    )
            print(
                "  client CPU alone allows = 1 / (client CPU s per judgment x bound/s): the share of the bound one "
                "free core for the client would give (load-independent; above 1: the client is not the limit); "
                "server CPU ms: the loopback server's own CPU per request (10 ms ticks), which shares the machine"
            )
            print(f"\n{'tree':>6} {'cache run':<34} {'judgments':>9} {'seconds':>8}")
            for label, tree in trees if "cached" in parts else ():
                cached = _sub(["--worker", "cached", "--label", label, "--cached-n", str(args.cached_n), *common], tree)
                cli, heavy = _cli_cached(folder, url, label, args.cached_n, tree)
                print(f"{label:>6} {'first run (fills cache, c=64)':<34} {args.cached_n:>9} {cached['fill']:>8.2f}")
                print(f"{label:>6} {'fully cached re-run (in process)':<34} {args.cached_n:>9} {cached['again']:>8.2f}")
                print(f"{label:>6} {'fully cached re-run (hba-judge)':<34} {args.cached_n:>9} {cli:>8.2f}")
                print(f"{label:>6} {'  heavy modules it imported':<34} {', '.join(heavy) or 'none'}")
            print(f"\n{'tree':>6} {'import hba_tools.judge (s, median of 3)':<40}")
            for label, tree in trees if "imports" in parts else ():
                print(f"{label:>6} {_import_s(tree):<40.3f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    load_end = os.getloadavg()
    print(f"\nload average at the end: {load_end[0]:.2f} (1 min), {load_end[1]:.2f} (5 min)")


if __name__ == "__main__":
    main()
