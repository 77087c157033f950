"""A separate OS process that reserves against the shared ledger, without Django (the
processes of tests/budgets/test_ledger_processes.py). Prints one JSON line of results.

    python reserver.py REDIS_URL PREFIX PLAN_JSON

PLAN_JSON: {"name", "threads", "per_thread", "caps": [[key, max_tokens, max_micros]],
"windows": [[key, kind, limit]], "tokens", "micros", "mode"}. Modes: `hold` (reserve, keep
the holds), `cycle` (reserve → settle with `actual` tokens/micros), `chain` (a turn's calls:
each reserve settles the thread's previous call in the same step, the last is settled on its
own; a refused reserve ends the chain), `hang` (reserve once, print, then wait to be
killed). Every process waits on a Redis barrier (`PREFIX:go`) so they reserve at the same
time.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis

from apps.budgets.ledger.redis_ledger import PriorSettle, RedisLedger
from apps.budgets.ledger.types import Cap, Counter, RateWindow


def main() -> None:
    url, prefix, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = redis.Redis.from_url(url)
    led = RedisLedger(client, prefix=prefix)
    caps = [
        Cap(
            counter=Counter(key=key, scope="tenant", target="t1", window="", ttl_s=600),
            budget_id=None,
            period="day",
            max_tokens=tokens,
            max_micros=micros,
        )
        for key, tokens, micros in plan["caps"]
    ]
    windows = [
        RateWindow(key=key, scope="tenant", kind=kind, limit=limit)
        for key, kind, limit in plan["windows"]
    ]
    name, tokens, micros = plan["name"], plan["tokens"], plan["micros"]
    results: dict[str, int] = {}
    settled_tokens, settled_micros = [0], [0]
    lock = threading.Lock()

    def count(kind: str) -> None:
        with lock:
            results[kind] = results.get(kind, 0) + 1

    def settled(actual_t: int, actual_c: int) -> None:
        with lock:
            settled_tokens[0] += actual_t
            settled_micros[0] += actual_c

    def work(thread: int) -> None:
        prior: PriorSettle | None = None
        for i in range(plan["per_thread"]):
            rid = f"{name}-{thread}-{i}"
            result = led.reserve(
                reservation_id=rid,
                caps=caps,
                windows=windows,
                tokens=tokens,
                micros=micros,
                deadline_s=time.time() + plan.get("deadline_s", 600),
                meta=plan.get("meta", {"name": name}),
                settle=prior,
            )
            count(result.kind)
            if prior is not None:
                settled(prior.tokens, prior.micros)
                prior = None
            if plan["mode"] == "chain":
                if result.kind != "ok":
                    break
                prior = PriorSettle(rid, *plan["actual"])
                continue
            if result.kind == "ok" and plan["mode"] == "hang":
                print(json.dumps({"held": rid}), flush=True)
                threading.Event().wait()
            if result.kind == "ok" and plan["mode"] == "cycle":
                actual_t, actual_c = plan["actual"]
                led.settle(
                    reservation_id=rid, caps=caps, windows=windows, tokens=actual_t, micros=actual_c
                )
                settled(actual_t, actual_c)
        if prior is not None:
            led.settle(
                reservation_id=prior.reservation_id,
                caps=caps,
                windows=windows,
                tokens=prior.tokens,
                micros=prior.micros,
            )
            settled(prior.tokens, prior.micros)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(plan["threads"])]
    client.incr(f"{prefix}:ready")
    client.blpop([f"{prefix}:go"], timeout=60)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        json.dumps(
            {
                "results": results,
                "settled_tokens": settled_tokens[0],
                "settled_micros": settled_micros[0],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
