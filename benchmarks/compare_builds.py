"""Two checkouts of Warden measured in the same minutes: `bench_turns.py`'s turn, alternated.

    .venv/bin/python benchmarks/compare_builds.py ../old-checkout . --turns 100
    .venv/bin/python benchmarks/compare_builds.py ../old-checkout . --turns 20 --latency 300

On a shared 2-core machine the speed of the whole machine drifts by more than one change moves
a turn (15-20 % between back-to-back runs of one build), so two builds measured one after the
other compare the machine's minutes, not the builds. Here both builds' platforms are up at
once (each with its checkout's code, its own var/bench/, daphne and worker, as `make run`
starts them; one fake model server for both), and their turns alternate — A, B, then B, A —
one at a time, so each build's turns sample the same stretches of time. Idle, a platform
costs the other almost nothing. Printed for each: the turn's p50 and mean, `POST /turns` p50
and platform time per step, with the bare loop's p50 as the floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _bench(checkout: Path) -> Any:
    """`checkout`'s benchmarks/bench_turns.py (a launcher imports its own checkout's)."""
    sys.path.insert(0, str(checkout / "benchmarks"))
    import bench_turns

    return bench_turns


def serve(model_port: int, latency: int) -> None:
    """Run with a checkout's interpreter, in that checkout (even one older than this script):
    start its platform, say where, stop when told."""
    platform = _bench(Path.cwd()).start_platform(model_port, [latency], [])
    print(json.dumps({"url": platform.url, "api_key": platform.api_key, "agents": platform.agents}))
    sys.stdout.flush()
    sys.stdin.read()  # until the comparing process closes it
    platform.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("a", nargs="?", help="a checkout (its .venv is used)")
    parser.add_argument("b", nargs="?", help="another checkout")
    parser.add_argument("--turns", type=int, default=100, help="turns per build")
    parser.add_argument("--latency", type=int, default=0, help="model latency, ms")
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    if not (args.a and args.b):
        parser.error("two checkouts to compare")
    bench = _bench(Path(__file__).resolve().parent.parent)
    from devtools.embedded import free_port, port_in_use

    checkouts = [Path(args.a).resolve(), Path(args.b).resolve()]
    model_port = free_port()
    model = subprocess.Popen([bench.PY, bench.__file__, "--serve-model", str(model_port)])
    launchers: list[subprocess.Popen[str]] = []
    try:
        while not port_in_use(model_port):
            time.sleep(0.05)
        platforms = []
        for checkout in checkouts:  # one at a time: each picks a free port of its own
            launcher = subprocess.Popen(
                [
                    str(checkout / ".venv/bin/python"),
                    str(Path(__file__).resolve()),
                    *("--serve", str(model_port), str(args.latency)),
                ],
                cwd=checkout,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            launchers.append(launcher)
            assert launcher.stdout is not None
            info = json.loads(launcher.stdout.readline())
            agents = {int(k): v for k, v in info["agents"].items()}
            platforms.append(bench.Platform(info["url"], info["api_key"], agents))

        clients: list[Any] = [None, None]  # bench.warden_turn keeps its client per thread

        def turn(index: int) -> Any:
            bench._local.http = clients[index]
            try:
                return bench.warden_turn(platforms[index], args.latency)
            finally:
                clients[index] = bench._local.http

        for _ in range(5):  # warm up: connections, routers, the calculator's helper
            turn(0), turn(1)
        samples: list[list[Any]] = [[], []]
        for i in range(args.turns):
            for index in (0, 1) if i % 2 == 0 else (1, 0):
                samples[index].append(turn(index))
        bare = statistics.median(
            bench.bare_turn(model_port, args.latency).total_s for _ in range(20)
        )
    finally:
        for launcher in launchers:
            if launcher.stdin is not None:
                launcher.stdin.close()
        for launcher in launchers:
            launcher.wait(timeout=60)
        model.terminate()
        model.wait()

    print(
        f"{args.latency} ms model, {args.turns} turns each, alternated; bare loop p50 "
        f"{bare * 1000:.1f} ms"
    )
    for checkout, taken in zip(checkouts, samples, strict=True):
        totals = [s.total_s * 1000 for s in taken]
        posts = [s.post_s * 1000 for s in taken]
        p50 = statistics.median(totals)
        print(
            f"  {checkout!s:40s} p50 {p50:7.1f} ms  mean {statistics.mean(totals):7.1f} ms"
            f"  POST /turns p50 {statistics.median(posts):5.1f} ms"
            f"  per step {(p50 - bare * 1000) / bench.STEPS:5.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
