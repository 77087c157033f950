"""The reservation ledger's client: runs scripts.py's Lua with redis-py, and nothing else.

No Django here (the benchmark and the processes in tests/budgets run it bare). Loading a
counter from the Postgres ledger, and deciding what a refusal means, are the caller's
(apps/budgets/services/ledger.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from apps.budgets.ledger import scripts
from apps.budgets.ledger.types import Cap, Counter, CounterState, RateWindow, ReserveResult

# A reservation hash outlives its deadline by this much, so the reconciler always finds it.
_RESERVATION_KEEP_S = 86_400


@dataclass(frozen=True)
class Hold:
    """An open, expired or settled reservation as Redis has it."""

    state: str
    tokens: int
    micros: int
    meta: dict[str, Any]


@dataclass(frozen=True)
class SettleOutcome:
    """`previous`: open | expired | missing (Redis had lost it) | dup (settled before).
    `states`: the loaded counters after the settle, by key."""

    previous: str
    states: dict[str, CounterState]


@dataclass(frozen=True)
class PriorSettle:
    """A settle to run in the same step as the next reserve (`RedisLedger.reserve`): a
    reservation held in the same caps and windows, and what its call used."""

    reservation_id: str
    tokens: int
    micros: int


@dataclass(frozen=True)
class _Plan:
    """Caps grouped by counter: one KEY per counter, however many caps read it (an explicit
    session budget and an agent's built-in session cap hold once, on the tighter limit)."""

    counters: list[Counter]
    caps: list[list[Cap]]
    argv: list[int]


def _plan(caps: Iterable[Cap], fresh: Collection[str] = ()) -> _Plan:
    """`fresh`: keys of counters that load as zero if missing (see scripts._CHECKS)."""
    grouped: dict[str, list[Cap]] = {}
    for cap in caps:
        grouped.setdefault(cap.counter.key, []).append(cap)
    counters, argv = [], []
    for group in grouped.values():
        counter = group[0].counter
        tokens = [c.max_tokens for c in group if c.max_tokens is not None]
        micros = [c.max_micros for c in group if c.max_micros is not None]
        counters.append(counter)
        argv += [
            min(tokens) if tokens else -1,
            min(micros) if micros else -1,
            counter.ttl_s,
            1 if counter.key in fresh else 0,
        ]
    return _Plan(counters=counters, caps=list(grouped.values()), argv=argv)


def _window_argv(windows: Sequence[RateWindow], tokens: int, *, least: int = 0) -> list[int]:
    """(limit, weight, span) per window: a request weighs 1 in rpm, its hold in tpm."""
    argv: list[int] = []
    for window in windows:
        weight = 1 if window.kind == "rpm" else max(tokens, least)
        argv += [window.limit, weight, window.span_ms]
    return argv


def _states(counters: Sequence[Counter], flat: Sequence[Any]) -> dict[str, CounterState]:
    states: dict[str, CounterState] = {}
    for i, counter in enumerate(counters):
        st, sc, rt, rc = (int(x) for x in flat[i * 4 : i * 4 + 4])
        if st >= 0:
            states[counter.key] = CounterState(st, sc, rt, rc)
    return states


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def refused_cap(caps: Sequence[Cap], state: CounterState, tokens: int, micros: int) -> Cap:
    """Which of the caps reading one counter has no room for (tokens, micros)."""
    for cap in caps:
        if cap.max_tokens is not None and (
            state.spent_tokens + state.reserved_tokens + tokens > cap.max_tokens
        ):
            return cap
        if cap.max_micros is not None and (
            state.spent_micros + state.reserved_micros + micros > cap.max_micros
        ):
            return cap
    return caps[0]


class RedisLedger:
    def __init__(
        self, client: redis.Redis, *, prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.clock = clock
        self.open_key = f"{prefix}:open"
        self.stats_key = f"{prefix}:stats"
        self._reserve = client.register_script(scripts.RESERVE)
        self._peek = client.register_script(scripts.PEEK)
        self._settle = client.register_script(scripts.SETTLE)
        self._settle_reserve = client.register_script(scripts.SETTLE_RESERVE)
        self._expire = client.register_script(scripts.EXPIRE)
        self._load = client.register_script(scripts.LOAD)

    def reservation_key(self, reservation_id: str) -> str:
        return f"{self.prefix}:r:{reservation_id}"

    # ------------------------------------------------------------------ the call path

    def reserve(
        self,
        *,
        reservation_id: str,
        caps: Sequence[Cap],
        windows: Sequence[RateWindow],
        tokens: int,
        micros: int,
        deadline_s: float,
        meta: Mapping[str, Any],
        fresh: Collection[str] = (),
        settle: PriorSettle | None = None,
    ) -> ReserveResult:
        """Hold (tokens, micros) in every cap's counter and count the call in every rate
        window, or nothing at all. `fresh`: keys of counters to load as zero if missing.
        `settle`: first settle an earlier reservation of the same caps and windows, in the
        same step (it stands whatever the reserve answers; settling is idempotent)."""
        if tokens < 0 or micros < 0:
            raise ValueError("a hold is never negative")
        if settle is not None and (settle.tokens < 0 or settle.micros < 0):
            raise ValueError("usage is never negative")
        plan = _plan(caps, fresh)
        now = self.clock()
        doc = {**meta, "counters": [c.key for c in plan.counters]}
        keep = int(max(0.0, deadline_s - now)) + _RESERVATION_KEEP_S
        keys = [
            *(c.key for c in plan.counters),
            *(w.key for w in windows),
            self.reservation_key(reservation_id),
            self.open_key,
        ]
        args: list[Any] = [
            int(now * 1000),
            reservation_id,
            int(deadline_s * 1000),
            len(plan.counters),
            len(windows),
            tokens,
            micros,
            json.dumps(doc, separators=(",", ":")),
            keep,
            *plan.argv,
            *_window_argv(windows, tokens),
        ]
        if settle is None:
            raw = self._reserve(keys=keys, args=args)
        else:
            tpm = [j for j, w in enumerate(windows, start=1) if w.kind == "tpm"]
            keys.append(self.reservation_key(settle.reservation_id))
            args += [settle.reservation_id, settle.tokens, settle.micros, len(tpm), *tpm]
            raw = self._settle_reserve(keys=keys, args=args)
        return self._result(raw, plan, windows, tokens, micros)

    def peek(
        self,
        *,
        caps: Sequence[Cap],
        windows: Sequence[RateWindow],
        tokens: int = 0,
        micros: int = 0,
        fresh: Collection[str] = (),
    ) -> ReserveResult:
        """Whether (tokens, micros) would fit now, holding nothing. With 0, a cap already at
        its limit fits no more only if its overrun took it past; pass 1 to ask "is there room
        for anything". `fresh` as for `reserve` (such a counter is loaded, nothing held)."""
        plan = _plan(caps, fresh)
        keys = [*(c.key for c in plan.counters), *(w.key for w in windows)]
        args: list[Any] = [
            int(self.clock() * 1000),
            "",
            0,
            len(plan.counters),
            len(windows),
            tokens,
            micros,
            "",
            0,
            *plan.argv,
            *_window_argv(windows, tokens, least=1),
        ]
        result = self._result(self._peek(keys=keys, args=args), plan, windows, tokens, micros)
        if result.kind != "ok":
            return result
        # The script reports states as if (tokens, micros) were held: peek holds nothing.
        states = {
            key: CounterState(
                s.spent_tokens,
                s.spent_micros,
                s.reserved_tokens - tokens,
                s.reserved_micros - micros,
            )
            for key, s in result.states.items()
        }
        return ReserveResult("ok", states=states)

    def _result(
        self,
        raw: list[Any],
        plan: _Plan,
        windows: Sequence[RateWindow],
        tokens: int,
        micros: int,
    ) -> ReserveResult:
        kind = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        if kind == "ok":
            return ReserveResult("ok", states=_states(plan.counters, raw[1:]))
        if kind == "dup":
            return ReserveResult("dup")
        if kind == "load":
            return ReserveResult("load", counter=plan.counters[int(raw[1]) - 1])
        if kind == "over":
            i = int(raw[1]) - 1
            state = CounterState(*(int(x) for x in raw[2:6]))
            cap = refused_cap(plan.caps[i], state, tokens, micros)
            return ReserveResult("over", states={cap.counter.key: state}, cap=cap)
        if kind == "rate":
            return ReserveResult(
                "rate", window=windows[int(raw[1]) - 1], retry_after_s=int(raw[2]) / 1000
            )
        raise RuntimeError(f"unexpected reply from the reserve script: {raw!r}")

    def settle(
        self,
        *,
        reservation_id: str,
        caps: Sequence[Cap],
        windows: Sequence[RateWindow],
        tokens: int,
        micros: int,
    ) -> SettleOutcome:
        """Replace the hold by what the call used (or, for a hold the reconciler already
        charged, correct the charge to it). Idempotent: a second settle changes nothing."""
        if tokens < 0 or micros < 0:
            raise ValueError("usage is never negative")
        plan = _plan(caps)
        tpm = [w.key for w in windows if w.kind == "tpm"]
        return self._settle_keys(reservation_id, plan.counters, tpm, tokens, micros)

    def settle_counters(
        self, reservation_id: str, counter_keys: Sequence[str], *, tokens: int, micros: int
    ) -> SettleOutcome:
        """`settle` by the counters' keys (as a reservation's meta lists them), for the
        reconciler; rate windows are left to expire."""
        counters = [Counter(key=k, scope="", target="", window="", ttl_s=0) for k in counter_keys]
        return self._settle_keys(reservation_id, counters, [], tokens, micros)

    def _settle_keys(
        self,
        reservation_id: str,
        counters: Sequence[Counter],
        tpm_keys: Sequence[str],
        tokens: int,
        micros: int,
    ) -> SettleOutcome:
        keys = [
            self.reservation_key(reservation_id),
            self.open_key,
            *(c.key for c in counters),
            *tpm_keys,
        ]
        args: list[Any] = [reservation_id, tokens, micros, len(counters), len(tpm_keys)]
        raw = self._settle(keys=keys, args=args)
        previous = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        if previous == "dup":
            return SettleOutcome("dup", {})
        return SettleOutcome(previous, _states(counters, raw[1:]))

    # ------------------------------------------------------------------ counters

    def load(self, counter: Counter, spent_tokens: int, spent_micros: int) -> None:
        """Fill a counter from the ledger's sums, unless another process did first."""
        self._load(keys=[counter.key], args=[spent_tokens, spent_micros, counter.ttl_s])

    def states(self, counters: Sequence[Counter]) -> dict[str, CounterState | None]:
        """Each counter's state; None for one not loaded."""
        pipe = self.client.pipeline(transaction=False)
        for counter in counters:
            pipe.hmget(counter.key, "ld", "st", "sc", "rt", "rc")
        result: dict[str, CounterState | None] = {}
        for counter, values in zip(counters, pipe.execute(), strict=True):
            if values[0] is None:
                result[counter.key] = None
            else:
                result[counter.key] = CounterState(*(int(v or 0) for v in values[1:]))
        return result

    # ------------------------------------------------------------------ reconciliation

    def due(self, now_s: float, limit: int) -> list[str]:
        """Open reservations whose deadline has passed, oldest first."""
        ids = self.client.zrangebyscore(
            self.open_key, "-inf", int(now_s * 1000), start=0, num=limit
        )
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def hold(self, reservation_id: str) -> Hold | None:
        values = self.client.hmget(self.reservation_key(reservation_id), "state", "t", "c", "meta")
        if values[0] is None:
            return None
        return Hold(
            state=_text(values[0]),
            tokens=int(values[1] or 0),
            micros=int(values[2] or 0),
            meta=json.loads(values[3]) if values[3] else {},
        )

    def expire(self, reservation_id: str, hold: Hold | None = None) -> dict[str, Any] | None:
        """Charge a reservation's hold if it is still open (its meta, then), else None.
        Either way it leaves the open set."""
        hold = hold or self.hold(reservation_id)
        if hold is None:
            self.client.zrem(self.open_key, reservation_id)
            return None
        counters = [str(k) for k in hold.meta.get("counters", [])]
        keys = [self.reservation_key(reservation_id), self.open_key, *counters]
        charged = self._expire(keys=keys, args=[reservation_id, len(counters)])
        return hold.meta if int(charged) == 1 else None

    def open_count(self) -> int:
        return int(self.client.zcard(self.open_key))

    # ------------------------------------------------------------------ statistics

    def stats_incr(self, name: str, by: int = 1) -> None:
        self.client.hincrby(self.stats_key, name, by)

    def stats(self) -> dict[str, int]:
        raw = self.client.hgetall(self.stats_key)
        return {_text(k): int(v) for k, v in raw.items()}
