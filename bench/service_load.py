"""Service throughput and latency with dynamic micro-batching on and off, at 1, 8 and 32 concurrent clients.

Two `prefsum serve` processes on 127.0.0.1 load the same bundles, one with batching (max batch 32, max wait 5 ms)
and one without (every request alone, PREFSUM_BATCHING=false); both get the same ONNX Runtime threads. Closed-loop
clients (each sends its next request when the previous one is answered) post one greedy TL;DR summarization per
request. The two servers are measured alternately, cell by cell, so drift on this shared machine hits both alike.
Every cell is bounded in time (--seconds) and in requests (--max-requests per client); traffic stays on loopback.

    python bench/service_load.py [--bundles DIR | --checkpoint DIR] [--seconds 6] [--threads 1]

Reports requests/s, p50 and p99 latency per cell; last line ``ratio throughput batched/unbatched @32 = X``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHECKPOINTS = [REPO / "runs" / "tiny" / "sft", REPO / "runs" / "exp" / "sftI"]
POSTS = REPO / "runs" / "world" / "tldr" / "test.jsonl"
CLIENTS = (1, 8, 32)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", type=Path, help="bundles folder (default: runs/tiny/bundles if it has bundles)")
    p.add_argument("--checkpoint", type=Path, help="export this policy checkpoint to a temporary bundle instead")
    p.add_argument("--seconds", type=float, default=6.0, help="length of each measured cell")
    p.add_argument("--max-requests", type=int, default=400, help="cap on requests per client per cell")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads in each server")
    p.add_argument("--max-new-tokens", type=int, default=None, help="response budget (default: the bundle's)")
    p.add_argument("--clients", default=",".join(map(str, CLIENTS)), help="comma-separated client counts")
    return p.parse_args(argv)


def find_bundles(args, work: Path) -> Path:
    if args.bundles:
        return args.bundles
    default = REPO / "runs" / "tiny" / "bundles"
    if not args.checkpoint and default.is_dir() and any((d / "manifest.json").is_file() for d in default.iterdir()):
        return default
    ckpt = args.checkpoint or next((c for c in CHECKPOINTS if (c / "prefsum.json").is_file()), None)
    if ckpt is None:
        raise SystemExit(
            "no bundles to serve: pass --bundles DIR (from `prefsum export`) or --checkpoint DIR, or run `make run`"
        )
    import torch

    from training.export import export_bundle

    torch.set_num_threads(max(1, args.threads))
    print(f"exporting {ckpt} to a temporary bundle ...", flush=True)
    export_bundle(ckpt, work / "bundles", name="policy")
    return work / "bundles"


def load_posts(n: int = 200) -> list[dict[str, str]]:
    if POSTS.is_file():
        rows = [json.loads(line) for line in POSTS.read_text(encoding="utf-8").splitlines()[:n] if line.strip()]
        return [{"subreddit": r["subreddit"], "title": r["title"], "post": r["post"]} for r in rows]
    return [
        {
            "subreddit": "relationships",
            "title": f"My boyfriend ({20 + i % 15}M) wants to move",
            "post": f"We have been together for {i % 9 + 1} years.\nHe wants to move to Denver for a job that pays "
            f"${50 + i},000 a year.\nMy lease ends in June and I pay $1,200 a month.\nShould I go with him?",
        }
        for i in range(n)
    ]


class Server:
    def __init__(self, bundles: Path, db: Path, env: dict[str, str]):
        import httpx

        with socket.socket() as sock:  # a free loopback port (uvicorn's start-up line is not logged at warning)
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "prefsum", "serve", "--bundles", str(bundles), "--db", str(db)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        full = {k: v for k, v in os.environ.items() if not k.startswith("PREFSUM_")} | env
        self.log = open(db.with_suffix(".log"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"a server did not start; see {db.with_suffix('.log')} or run `prefsum serve` by hand")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def run_cell(url: str, clients: int, posts, body_extra, seconds: float, cap: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(k: int) -> None:
        mine: list[float] = []
        bad = 0
        with httpx.Client(base_url=url, timeout=120) as c:
            start.wait()
            for j in range(cap):
                if time.monotonic() >= stop_at[0]:
                    break
                body = {"inputs": [posts[(k * 7919 + j) % len(posts)]]} | body_extra
                t0 = time.perf_counter()
                r = c.post("/v1/summarize", json=body)
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    mine.append(dt)
                else:
                    bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat = sorted(latencies)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
    return {
        "rps": len(lat) / elapsed,
        "p50": pick(0.50) * 1000,
        "p99": pick(0.99) * 1000,
        "n": len(lat),
        "errors": errors[0],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    clients = [int(x) for x in args.clients.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="prefsum-bench-") as tmp:
        work = Path(tmp)
        bundles = find_bundles(args, work)
        posts = load_posts()
        base = {
            "PREFSUM_THREADS": str(args.threads),
            "PREFSUM_PROVIDER": "cpu",
            "PREFSUM_LOG_LEVEL": "warning",
            "PREFSUM_ADMIN_TOKEN": "bench",
            "OMP_NUM_THREADS": str(args.threads),
        }
        modes = {
            "batched": base | {"PREFSUM_BATCHING": "true", "PREFSUM_MAX_BATCH": "32", "PREFSUM_MAX_WAIT_MS": "5"},
            "unbatched": base | {"PREFSUM_BATCHING": "false"},
        }
        servers = {name: Server(bundles, work / f"{name}.db", env) for name, env in modes.items()}
        extra = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
        try:
            import httpx

            for s in servers.values():  # warm up: first calls load lazily-initialised kernels
                with httpx.Client(base_url=s.url, timeout=120) as c:
                    for p in posts[:4]:
                        c.post("/v1/summarize", json={"inputs": [p]} | extra).raise_for_status()
            results: dict[tuple[str, int], dict[str, float]] = {}
            print(
                f"bundles {bundles}; {args.seconds:g} s per cell; threads {args.threads}; greedy, 1 post/request",
                flush=True,
            )
            print(f"{'mode':<10} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'errors':>6}")
            for n in clients:
                for name, s in servers.items():
                    r = run_cell(s.url, n, posts, extra, args.seconds, args.max_requests)
                    results[(name, n)] = r
                    print(
                        f"{name:<10} {n:>7} {r['rps']:>8.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['n']:>9} "
                        f"{r['errors']:>6}",
                        flush=True,
                    )
        finally:
            for s in servers.values():
                s.stop()
    for n in clients:
        b, u = results[("batched", n)], results[("unbatched", n)]
        print(
            f"@{n:<2} clients: throughput x{b['rps'] / max(u['rps'], 1e-9):.2f} with batching; "
            f"p50 {b['p50']:.0f} vs {u['p50']:.0f} ms, p99 {b['p99']:.0f} vs {u['p99']:.0f} ms"
        )
    last = max(clients)
    ratio = results[("batched", last)]["rps"] / max(results[("unbatched", last)]["rps"], 1e-9)
    print(f"ratio throughput batched/unbatched @{last} = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
