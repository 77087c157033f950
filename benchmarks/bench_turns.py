"""Warden turns end to end against the design document's bare `react_loop`.

    .venv/bin/python benchmarks/bench_turns.py            # ~3 minutes, one command
    .venv/bin/python benchmarks/bench_turns.py --quick    # fewer samples, ~1 minute

What it starts, all on loopback: a fake OpenAI-compatible model server (its own process;
streaming and non-streaming chat completions, the latency taken from the URL path), embedded
PostgreSQL + Redis under var/bench/ (or DATABASE_URL / REDIS_URL), daphne and a Celery worker
started the way `make run` starts them (`--worker-args` adds to the worker's command line).

Every turn is the issue's turn: 3 model calls and 2 tool calls (builtin `clock_now`, then
`calculator`), then the answer. Warden's turn is driven over the REST API and watched over SSE:
subscribe to /sessions/<id>/events, POST /sessions/<id>/turns, stop at `turn.completed`. The
floor is the design document's bare loop over the openai SDK against the same server, calling
the same builtin functions in-process.

Scenarios: model latency 0 ms and 300 ms, 1 turn at a time and 20 at once. Printed: p50/p95
of both, the ratio of the p50s, POST /turns latency, platform time per step
((Warden p50 - bare p50) / 3 at 0 ms, one at a time), and "goal met"/"goal missed" for each
goal of issue 8. It is a benchmark, not a test: figures depend on the machine and its load,
which is printed with them (re-run when `uptime` is quiet).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
VAR = ROOT / "var" / "bench"
STEPS = 3  # model calls per turn

SYSTEM = "You are a helpful assistant. Use the tools."
TASK = "What time is it, and what is 6 * 7?"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "clock_now",
            "description": "The current date and time in a time zone.",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    },
]


# --------------------------------------------------------------------------- fake model server


def _reply_for(messages: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(kind, name or text, arguments) for the next step: the step is the number of tool
    results so far, so the server keeps no state and any number of turns can interleave."""
    done = sum(1 for m in messages if m.get("role") == "tool")
    if done == 0:
        return "tool", "clock_now", json.dumps({"timezone": "UTC"})
    if done == 1:
        return "tool", "calculator", json.dumps({"expression": "6 * 7"})
    return "final", "It is late, and 6 * 7 = 42.", ""


class _ModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint
    disable_nagle_algorithm = True  # else headers and body meet the client's delayed ACK

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        # /lat<ms>/v1/chat/completions
        latency_ms = int(self.path.split("/")[1].removeprefix("lat") or 0)
        if latency_ms:
            time.sleep(latency_ms / 1000)
        kind, what, args = _reply_for(body.get("messages", []))
        usage = {"prompt_tokens": 60, "completion_tokens": 12, "total_tokens": 72}
        base = {"id": "chatcmpl-b", "created": 0, "model": "bench-model"}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None}
            if kind == "tool":
                call = {"id": f"call_{what}", "type": "function"}
                message["tool_calls"] = [{**call, "function": {"name": what, "arguments": args}}]
            else:
                message["content"] = what
            reason = "tool_calls" if kind == "tool" else "stop"
            choice = {"index": 0, "message": message, "finish_reason": reason}
            payload = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        chunk = {**base, "object": "chat.completion.chunk"}
        if kind == "tool":
            function = {"name": what, "arguments": args}
            tool = {"index": 0, "id": f"call_{what}", "type": "function", "function": function}
            deltas = [{"role": "assistant", "tool_calls": [tool]}]
        else:
            words = what.split(" ")
            deltas = [
                {"content": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)
            ]
        events = [{**chunk, "choices": [{"index": 0, "delta": d}]} for d in deltas]
        events.append(
            {
                **chunk,
                "choices": [
                    {
                        "index": 0,
                        "delta": {},
                        "finish_reason": "tool_calls" if kind == "tool" else "stop",
                    }
                ],
            }
        )
        events.append({**chunk, "choices": [], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in [*(f"data: {json.dumps(e)}\n\n" for e in events), "data: [DONE]\n\n"]:
            raw = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (the SDK closing a finished stream) is not news


def serve_model(port: int) -> None:
    server = _QuietServer(("127.0.0.1", port), _ModelHandler)
    server.request_queue_size = 256
    server.serve_forever(poll_interval=0.05)


# --------------------------------------------------------------------------- the bare loop


def bare_react_loop(
    client: Any, task: str, tools: dict[str, Callable[..., Any]], model: str
) -> str:
    """The design document's loop: think, act, observe, until an answer or max steps."""
    messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
    for _ in range(10):
        response = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
        message = response.choices[0].message
        if not message.tool_calls:
            return str(message.content)
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            result = tools[call.function.name](json.loads(call.function.arguments), None)
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
            )
    return "max steps exceeded"


# --------------------------------------------------------------------------- the platform


@dataclass
class Platform:
    url: str
    api_key: str
    agents: dict[int, str]  # latency ms → agent id
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    from devtools.embedded import port_in_use

    deadline = time.monotonic() + 60
    while not port_in_use(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start; see {log}")
        time.sleep(0.1)


def start_platform(model_port: int, latencies: list[int], worker_args: list[str]) -> Platform:
    from devtools.embedded import free_port, services_start

    env = dict(os.environ)
    if not env.get("DATABASE_URL") or not env.get("REDIS_URL"):
        state = services_start(
            VAR,
            database="warden_bench",
            need_db=not env.get("DATABASE_URL"),
            need_redis=not env.get("REDIS_URL"),
            reuse=True,
        )
        env.setdefault("DATABASE_URL", state.database_url or "")
        env.setdefault("REDIS_URL", state.redis_url or "")
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.dev",
            "DJANGO_SECRET_KEY": env.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(40),
            # The fake model is the only loopback address the platform may call.
            "WARDEN_EGRESS_ALLOW": f"127.0.0.1:{model_port}",
            "WARDEN_API_RATE_PER_PRINCIPAL": "1000000/minute",
            "WARDEN_API_RATE_PER_ADDRESS": "1000000/minute",
            "WARDEN_LOG_FORMAT": "console",
            "WARDEN_LOCAL_LLM": "off",
        }
    )
    os.environ.update(env)
    VAR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [PY, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
    )

    import django

    django.setup()
    from apps.agents import services as agent_services
    from apps.llm.services import endpoint_save
    from apps.tenants.models import Tenant
    from apps.tenants.services import api_key_create

    suffix = uuid.uuid4().hex[:8]
    tenant = Tenant.objects.create(name=f"Bench {suffix}", slug=f"bench-{suffix}")
    agents: dict[int, str] = {}
    for latency in latencies:
        endpoint = endpoint_save(
            tenant=tenant,
            name=f"fake-{latency}",
            provider="openai",
            model="bench-model",
            base_url=f"http://127.0.0.1:{model_port}/lat{latency}/v1",
            tier="small",
            timeout_s=30.0,
            # Priced like a small hosted model: an unpriced endpoint is never called, and
            # priced calls take the path a production turn takes.
            price_input_per_mtok=Decimal("0.15"),
            price_output_per_mtok=Decimal("0.60"),
        )
        agent = agent_services.agent_save(
            tenant=tenant,
            name=f"Bench {latency} ms",
            slug=f"bench-{latency}",
            allowed_tools=["clock_now", "calculator"],
            allowed_endpoints=[endpoint],
        )
        agents[latency] = str(agent.id)
    _, api_key = api_key_create(tenant=tenant, name="bench", scopes=["admin"])
    from django.db import connections

    connections.close_all()

    port = free_port()
    web_log, worker_log = VAR / "daphne.log", VAR / "worker.log"
    web = subprocess.Popen(
        [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=web_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            *(PY, "-m", "celery", "-A", "config", "worker", "-l", "INFO"),
            *("-n", f"bench-{suffix}@%h", "--without-gossip", "--without-mingle", *worker_args),
        ],
        cwd=ROOT,
        env=env,
        stdout=worker_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    platform = Platform(f"http://127.0.0.1:{port}", api_key, agents, [web, worker], env)
    _wait_port(port, web, "daphne", web_log)
    from config.celery import app

    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[f"bench-{suffix}@{os.uname().nodename}"], timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            platform.stop()
            raise SystemExit(f"the worker did not start; see {worker_log}")
    return platform


# --------------------------------------------------------------------------- one turn each way


@dataclass
class Sample:
    total_s: float
    post_s: float = 0.0
    started_s: float = 0.0  # POST sent → turn.started received


def _sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    data = ""
    for line in lines:
        if line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield json.loads(data)
            data = ""


_local = threading.local()


def warden_turn(platform: Platform, latency: int) -> Sample:
    import httpx

    # One client per thread, kept across turns, as an integration keeps its HTTP client
    # (and as the bare loop keeps its openai client): a new httpx.Client per turn builds an
    # SSL context and a pool each time, CPU that competes with the platform on 2 cores.
    client = getattr(_local, "http", None)
    if client is None:
        headers = {"Authorization": f"Bearer {platform.api_key}"}
        client = _local.http = httpx.Client(base_url=platform.url, headers=headers, timeout=60)
    created = client.post("/api/v1/sessions", json={"agent": platform.agents[latency]})
    created.raise_for_status()
    session = created.json()["id"]
    with client.stream("GET", f"/api/v1/sessions/{session}/events") as stream:
        lines = stream.iter_lines()
        for line in lines:  # the stream is subscribed once it says how to retry
            if line.startswith("retry:"):
                break
        started = time.perf_counter()
        posted = client.post(f"/api/v1/sessions/{session}/turns", json={"message": TASK})
        post_s = time.perf_counter() - started
        if posted.status_code != 202:
            raise RuntimeError(f"POST /turns answered {posted.status_code}: {posted.text}")
        started_s = 0.0
        for event in _sse(lines):
            if event["event"] == "turn.started" and not started_s:
                started_s = time.perf_counter() - started
            if event["event"] == "turn.failed":
                raise RuntimeError(f"turn failed: {event['data']}")
            if event["event"] == "turn.completed":
                if "42" not in (event["data"].get("final_answer") or ""):
                    raise RuntimeError(f"unexpected answer: {event['data']}")
                return Sample(time.perf_counter() - started, post_s, started_s)
    raise RuntimeError("the event stream ended before turn.completed")


def bare_turn(model_port: int, latency: int) -> Sample:
    import openai

    from apps.tools.builtins import calculator, clock_now

    client = getattr(_local, "client", None)
    if client is None or getattr(_local, "latency", None) != latency:
        client = openai.OpenAI(
            api_key="no-key",
            base_url=f"http://127.0.0.1:{model_port}/lat{latency}/v1",
            max_retries=0,
        )
        _local.client, _local.latency = client, latency
    started = time.perf_counter()
    answer = bare_react_loop(
        client, TASK, {"clock_now": clock_now, "calculator": calculator}, "bench-model"
    )
    if "42" not in answer:
        raise RuntimeError(f"unexpected bare answer: {answer}")
    return Sample(time.perf_counter() - started)


def run_scenario(turn: Callable[[], Sample], *, concurrency: int, count: int) -> list[Sample]:
    """`count` turns, `concurrency` at a time (in rounds that start together)."""
    samples: list[Sample] = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        while len(samples) < count:
            samples += list(pool.map(lambda _: turn(), range(concurrency)))
    return samples


# --------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def goal(ok: bool) -> str:
    return "goal met" if ok else "goal MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-model", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--turns", type=int, default=40, help="sequential turns per scenario")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of 20 concurrent turns")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--worker-args", default="", help="extra `celery worker` arguments")
    args = parser.parse_args()
    if args.serve_model:
        serve_model(args.serve_model)
        return 0
    if args.quick:
        args.turns, args.rounds = 12, 2

    import logging

    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from devtools.embedded import free_port, port_in_use

    model_port = free_port()
    model = subprocess.Popen([PY, __file__, "--serve-model", str(model_port)], cwd=ROOT)
    platform: Platform | None = None
    load_before = os.getloadavg()
    try:
        deadline = time.monotonic() + 10
        while not port_in_use(model_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        platform = start_platform(model_port, [0, 300], args.worker_args.split())
        print(f"platform up at {platform.url} (worker args: {args.worker_args or 'as make run'})")
        for _ in range(3):  # warm up: connections, routers, the calculator's helper process
            warden_turn(platform, 0)
            bare_turn(model_port, 0)

        results: dict[tuple[int, int], tuple[list[Sample], list[Sample]]] = {}
        for latency in (0, 300):
            for concurrency in (1, args.concurrency):
                count = args.turns if concurrency == 1 else args.rounds * concurrency
                if latency and concurrency == 1:
                    count = max(6, count // 2)
                print(
                    f"  running {count} turns, {latency} ms model, {concurrency} at once …",
                    flush=True,
                )
                bare = run_scenario(
                    partial(bare_turn, model_port, latency), concurrency=concurrency, count=count
                )
                warden = run_scenario(
                    partial(warden_turn, platform, latency), concurrency=concurrency, count=count
                )
                results[(latency, concurrency)] = (bare, warden)
        load_after = os.getloadavg()
    finally:
        if platform is not None:
            platform.stop()
        model.terminate()
        model.wait()

    print()
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"(1 min; {os.cpu_count()} cores)"
    )
    print(
        f"{'scenario':34s} {'bare p50':>11s} {'bare p95':>11s} {'warden p50':>11s} "
        f"{'warden p95':>11s} {'ratio':>7s}"
    )
    limits = {(300, 1): 1.05, (300, args.concurrency): 1.25}
    verdicts: list[str] = []
    for (latency, concurrency), (bare, warden) in results.items():
        b = [s.total_s for s in bare]
        w = [s.total_s for s in warden]
        ratio = statistics.median(w) / statistics.median(b)
        label = f"{latency:3d} ms model, {concurrency:2d} at once (n={len(w)})"
        line = (
            f"{label:34s} {ms(statistics.median(b))} {ms(pct(b, 0.95))} "
            f"{ms(statistics.median(w))} {ms(pct(w, 0.95))} {ratio:6.2f}x"
        )
        limit = limits.get((latency, concurrency))
        if limit:
            line += f"  ≤{limit:.2f}x: {goal(ratio <= limit)}"
            verdicts.append(goal(ratio <= limit))
        print(line)
    bare0, warden0 = results[(0, 1)]
    per_step = (
        statistics.median(s.total_s for s in warden0) - statistics.median(s.total_s for s in bare0)
    ) / STEPS
    posts = [s.post_s for (_, c), (_, w) in results.items() if c == 1 for s in w]
    started = [s.started_s for s in warden0]
    print()
    print(
        f"platform time per step (0 ms model, 1 at once): {per_step * 1000:6.1f} ms   "
        f"≤10 ms: {goal(per_step <= 0.010)}"
    )
    print(
        f"POST /turns p50 {statistics.median(posts) * 1000:6.1f} ms, p95 "
        f"{pct(posts, 0.95) * 1000:6.1f} ms (n={len(posts)})   ≤10 ms: "
        f"{goal(statistics.median(posts) <= 0.010)}"
    )
    print(f"POST sent → turn.started over SSE: p50 {statistics.median(started) * 1000:6.1f} ms")
    verdicts += [goal(per_step <= 0.010), goal(statistics.median(posts) <= 0.010)]
    missed = sum(v != "goal met" for v in verdicts)
    print(f"\n{len(verdicts) - missed} of {len(verdicts)} goals met")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
