"""The turn path under budgets, against the real ledger (Redis holds, Postgres rows): every
model call is held at its most before it is made and settled after; a cap stops the turn
before a call could cross it, naming the scope; at 80 % the turn is warned once and the
budget's obligations switch on."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum

from apps.agents import orchestrator, services
from apps.agents.models import ActionNode, Agent, SessionEvent, Turn, TurnStatus
from apps.budgets.ledger.types import counter_for
from apps.budgets.models import Budget, UsageRecord
from apps.budgets.services import ledger as budget_ledger
from apps.llm.models import ModelEndpoint
from apps.llm.services import endpoint_save
from apps.tenants.models import Tenant
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_dispatch", "budget_prefix"),
]

CALCULATE = {"tool": "calculator", "arguments": {"expression": "6 * 7"}, "say": "Calculating."}
SCRIPT: list[dict[str, Any]] = [*[CALCULATE] * 5, {"final": "Done: ${last_tool_result}."}]


def events(turn: Turn, event_type: str) -> list[dict[str, Any]]:
    return [
        e.payload for e in SessionEvent.objects.filter(turn=turn, type=event_type).order_by("id")
    ]


def model_nodes(turn: Turn) -> list[ActionNode]:
    return list(ActionNode.objects.filter(turn=turn, kind="model_call").order_by("position"))


def run(agent: Agent, message: str = "go", user: Any = None) -> Turn:
    turn = services.turn_enqueue(session=make_session(agent, user), message=message)
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    return turn


def nothing_held(tenant: Tenant) -> None:
    led = budget_ledger.ledger()
    assert led.open_count() == 0
    day = counter_for(
        prefix=led.prefix,
        tenant_id=str(tenant.id),
        scope="tenant",
        target=str(tenant.id),
        period="day",
        at=datetime.now(UTC),
    )
    state = led.states([day])[day.key]
    if state is not None:
        assert (state.reserved_tokens, state.reserved_micros) == (0, 0)


def priced_agent(tenant: Tenant, **fields: Any) -> Agent:
    endpoint_save(
        tenant=tenant,
        name="priced",
        provider="scripted",
        model="scripted-priced",
        tier="small",
        allowed_sensitivities=["public", "internal", "confidential"],
        options={"script": SCRIPT},
        price_input_per_mtok=Decimal("4000"),
        price_output_per_mtok=Decimal("100"),
    )
    return make_agent(
        tenant,
        SCRIPT,
        tools=["calculator"],
        slug="priced",
        max_steps=8,
        endpoint_name="priced",
        max_output_tokens_per_turn=1000,
        **fields,
    )


def test_every_call_is_charged_once_at_its_price_and_nothing_stays_held(world: World) -> None:
    turn = run(priced_agent(world.tenant_a))
    assert (turn.status, turn.outcome) == (TurnStatus.COMPLETED, "completed"), turn.detail

    nodes = model_nodes(turn)
    rows = {r.node_id: r for r in UsageRecord.objects.filter(turn_id=turn.id)}
    assert len(nodes) == len(SCRIPT) == len(rows)
    for node in nodes:
        row = rows[node.node_id]
        expected = (
            Decimal(node.input_tokens) * 4000 + Decimal(node.output_tokens) * 100
        ) / 1_000_000
        assert (row.input_tokens, row.output_tokens) == (node.input_tokens, node.output_tokens)
        assert row.cost == expected
        assert Decimal(node.outputs["cost"]) == expected.quantize(Decimal("0.000001"))
        assert row.endpoint_name == "priced" and row.reservation_id.endswith("@1")
        # The hold was the most the call could cost: never below what it used.
        assert row.reserved_tokens >= row.input_tokens + row.output_tokens
        assert row.reserved_cost >= row.cost and not row.overrun
        assert node.inputs["reserved_tokens"] == row.reserved_tokens
    called = events(turn, "model.called")
    assert [e["cost"] for e in called] == [n.outputs["cost"] for n in nodes]
    assert turn.input_tokens == sum(r.input_tokens for r in rows.values())
    nothing_held(world.tenant_a)


def test_a_money_budget_stops_the_turn_before_a_call_could_cross_it(world: World) -> None:
    # Calibrate: what each call holds and costs, on a tenant with no budget.
    other_agent = priced_agent(world.tenant_b)
    probe = run(other_agent)
    nodes = model_nodes(probe)
    cost = [Decimal(n.outputs["cost"]) for n in nodes]
    held = [Decimal(n.inputs["reserved_cost"]) for n in nodes]
    need = [sum(cost[:k]) + held[k] for k in range(len(nodes))]
    # Room for the first three calls' holds, not for the fourth's.
    assert need[2] + Decimal("0.01") < need[3]
    limit = ((need[2] + need[3]) / 2).quantize(Decimal("0.0001"))

    agent = priced_agent(world.tenant_a)
    budget = Budget.objects.create(
        tenant=world.tenant_a, scope="tenant", period="day", max_cost=limit
    )
    turn = run(agent)

    assert (turn.status, turn.outcome) == (TurnStatus.FAILED, "budget_exceeded")
    [failed] = events(turn, "turn.failed")
    assert failed["reason"] == "budget_exceeded"
    assert failed["budget"]["scope"] == "tenant"
    assert failed["budget"]["budget_id"] == str(budget.id)
    assert failed["budget"]["resets_at"].endswith("T00:00:00Z")
    assert turn.detail == failed["detail"] and "tenant budget" in turn.detail
    assert "this call may cost up to" in turn.detail

    # Every call made was charged; the refused one was never made; the cap holds.
    made = model_nodes(turn)
    assert len(made) == 3
    charged = UsageRecord.objects.filter(tenant=world.tenant_a)
    assert charged.count() == len(made)
    assert charged.aggregate(c=Sum("cost"))["c"] <= budget.max_cost
    nothing_held(world.tenant_a)

    # The next turn of the tenant (a new session: a smaller first prompt) makes what still
    # fits and stops too; the cap still holds.
    again = run(agent)
    assert (again.status, again.outcome) == (TurnStatus.FAILED, "budget_exceeded")
    assert len(model_nodes(again)) < len(SCRIPT)
    assert charged.aggregate(c=Sum("cost"))["c"] <= budget.max_cost
    # Another tenant is not touched.
    other = run(other_agent)
    assert other.status == TurnStatus.COMPLETED
    nothing_held(world.tenant_a)


def two_tier_agent(tenant: Tenant) -> Agent:
    for name, tier in (("big", "large"), ("little", "small")):
        endpoint_save(
            tenant=tenant,
            name=name,
            provider="scripted",
            model=f"scripted-{name}",
            tier=tier,
            allowed_sensitivities=["public", "internal", "confidential"],
            options={"script": SCRIPT},
        )
    agent = make_agent(
        tenant,
        SCRIPT,
        tools=["calculator"],
        slug="tiered",
        max_steps=8,
        endpoint_name="big",
        model_tier="large",
        max_output_tokens_per_turn=200,
    )
    agent.allowed_endpoints.add(*ModelEndpoint.objects.filter(tenant=tenant, name="little"))
    return agent


def test_at_80_percent_the_turn_is_warned_once_and_backs_off_to_the_small_tier(
    world: World,
) -> None:
    # Calibrate: what each call holds and spends, on a tenant with no budget.
    probe = run(two_tier_agent(world.tenant_b))
    assert probe.status == TurnStatus.COMPLETED
    nodes = model_nodes(probe)
    assert {n.outputs["endpoint"] for n in nodes} == {"big"}
    spent = [n.input_tokens + n.output_tokens for n in nodes]
    held = [n.inputs["reserved_tokens"] for n in nodes]
    need = [sum(spent[:k]) + held[k] for k in range(len(nodes))]
    # A session cap the fourth call's hold takes past 80 %; the calls that fit run.
    cap = int(need[3] / 0.85)
    assert need[2] / cap < 0.8
    fits = next((k for k, n in enumerate(need) if n > cap), len(need))
    assert fits >= 4

    agent = two_tier_agent(world.tenant_a)
    budget = Budget.objects.create(
        tenant=world.tenant_a,
        scope="session",
        period="session",
        max_tokens=cap,
        obligations=["small_tier"],
    )
    turn = run(agent)
    if fits == len(need):
        assert turn.status == TurnStatus.COMPLETED, turn.detail
    else:  # stopped before the call that would not fit, naming the session
        assert (turn.status, turn.outcome) == (TurnStatus.FAILED, "budget_exceeded")
        assert events(turn, "turn.failed")[0]["budget"]["scope"] == "session"

    [warning] = events(turn, "budget.warning")
    assert warning["scope"] == "session" and warning["budget_id"] == str(budget.id)
    assert warning["obligations"] == ["small_tier"]
    assert 0.8 <= warning["fraction_used"] < 1.0
    assert warning["tokens_limit"] == cap
    endpoints = [e["endpoint"] for e in events(turn, "model.called")]
    # The warning comes with the fourth call's hold, before that call is made.
    assert endpoints == ["big"] * 3 + ["little"] * (fits - 3)

    # The policy input carries the same figures from then on.
    decisions = list(ActionNode.objects.filter(turn=turn, kind="policy").order_by("position"))
    budgets = [d.inputs["input"]["budget"] for d in decisions]
    assert budgets[0]["state"] == "ok" and budgets[0]["obligations"] == []
    assert budgets[-1]["state"] == "warning"
    assert budgets[-1]["obligations"] == ["small_tier"]
    session_scope = next(s for s in budgets[-1]["scopes"] if s["budget_id"] == str(budget.id))
    assert session_scope["tokens_limit"] == cap
    assert session_scope["fraction_used"] == round(session_scope["tokens_used"] / cap, 6) > 0


def test_a_call_over_its_hold_is_settled_at_the_truth_and_closes_the_scope(
    world: World,
) -> None:
    # A 100-token output allowance and a reply of about a thousand: the provider's count wins.
    chatty = [CALCULATE, {"final": "word " * 800}]
    agent = make_agent(
        world.tenant_a,
        chatty,
        tools=["calculator"],
        slug="chatty",
        max_output_tokens_per_turn=100,
    )
    budget = Budget.objects.create(
        tenant=world.tenant_a, scope="session", period="session", max_tokens=1000, obligations=[]
    )
    turn = run(agent)
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    [overrun] = events(turn, "budget.overrun")
    row = UsageRecord.objects.get(node_id=overrun["node_id"])
    assert row.overrun and row.output_tokens > 100
    assert overrun["tokens"] == row.input_tokens + row.output_tokens > overrun["reserved_tokens"]
    assert not UsageRecord.objects.filter(turn_id=turn.id, overrun=False, node_id=row.node_id)

    # The session's counter now sits at the truth: its next turn is refused at the door.
    from apps.budgets.exceptions import BudgetExhausted

    with pytest.raises(BudgetExhausted) as refused:
        services.turn_enqueue(session=turn.session, message="more")
    assert refused.value.details["budget_id"] == str(budget.id)


@pytest.mark.usefixtures("budget_prefix")
def test_a_full_rate_window_fails_the_turn_rate_limited_when_waiting_is_not_allowed(
    world: World, settings: Any
) -> None:
    from apps.budgets.models import TenantBudgetSettings

    settings.WARDEN_MODEL_RATE_MAX_WAIT_SECONDS = 0
    TenantBudgetSettings.objects.create(tenant=world.tenant_a, rpm_per_tenant=1)
    agent = make_agent(world.tenant_a, [CALCULATE, {"final": "ok"}], tools=["calculator"])
    turn = run(agent)
    assert (turn.status, turn.outcome) == (TurnStatus.FAILED, "rate_limited")
    [failed] = events(turn, "turn.failed")
    assert failed["budget"]["scope"] == "tenant" and failed["budget"]["kind"] == "rpm"
    assert len(model_nodes(turn)) == 1  # the first call counted; the second never made
    nothing_held(world.tenant_a)


def fallback_agent(tenant: Tenant, *, dear_sensitivities: list[str]) -> Agent:
    """A cheap primary and a hundred times dearer second endpoint, both allowed; the dear
    one takes the session's data (internal) only if `dear_sensitivities` says so."""
    for name, price, sensitivities in (
        ("cheap", Decimal("1"), ["public", "internal"]),
        ("dear", Decimal("100"), dear_sensitivities),
    ):
        endpoint_save(
            tenant=tenant,
            name=name,
            provider="scripted",
            model=f"scripted-{name}",
            tier="small",
            allowed_sensitivities=sensitivities,
            options={"script": SCRIPT},
            price_input_per_mtok=price,
            price_output_per_mtok=price,
        )
    agent = make_agent(
        tenant, SCRIPT, tools=["calculator"], slug="fallback", max_steps=8, endpoint_name="cheap"
    )
    agent.allowed_endpoints.add(*ModelEndpoint.objects.filter(tenant=tenant, name="dear"))
    return agent


@pytest.mark.parametrize(
    ("dear_sensitivities", "held_price"),
    [
        # The router never sends internal data to the dear endpoint: not a candidate, and
        # the hold is priced at the cheap one, though the agent may use both.
        (["public", "confidential"], Decimal("1")),
        # The router may fail over to it: the hold covers its price.
        (["public", "internal"], Decimal("100")),
    ],
)
def test_a_call_is_held_at_the_dearest_endpoint_it_may_really_reach(
    world: World, dear_sensitivities: list[str], held_price: Decimal
) -> None:
    turn = run(fallback_agent(world.tenant_a, dear_sensitivities=dear_sensitivities))
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    rows = list(UsageRecord.objects.filter(turn_id=turn.id))
    assert len(rows) == len(SCRIPT)
    for row in rows:
        assert row.endpoint_name == "cheap"
        assert row.reserved_cost == row.reserved_tokens * held_price / 1_000_000
        assert row.cost == (row.input_tokens + row.output_tokens) * Decimal(1) / 1_000_000
    nothing_held(world.tenant_a)


def test_a_calls_redis_settle_rides_in_the_next_reserve_and_the_last_one_at_the_end(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two calls the session counter still shows the earlier call's hold (never
    less than it used); the next reserve settles it in the same step, and the run's end
    settles the last call: the counters end at the ledger's sums, nothing held."""
    agent = priced_agent(world.tenant_a)
    seen: list[tuple[int, int]] = []
    session = make_session(agent)
    counter = counter_for(
        prefix=budget_ledger.ledger().prefix,
        tenant_id=str(world.tenant_a.id),
        scope="session",
        target=str(session.id),
        period="session",
        at=datetime.now(UTC),
    )

    from apps.tools.executors import builtin

    real = builtin.BuiltinExecutor.execute

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        # A tool runs between two model calls: what does Redis hold for the session now?
        state = budget_ledger.ledger().states([counter])[counter.key]
        assert state is not None
        seen.append((state.spent_tokens, state.reserved_tokens))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(builtin.BuiltinExecutor, "execute", execute)
    turn = services.turn_enqueue(session=session, message="go")
    orchestrator.turn_execute(turn_id=turn.id)
    turn.refresh_from_db()
    assert turn.status == TurnStatus.COMPLETED, turn.detail
    by_node = {r.node_id: r for r in UsageRecord.objects.filter(turn_id=turn.id)}
    rows = [by_node[n.node_id] for n in model_nodes(turn)]
    assert len(seen) == len(rows) - 1 == 5
    for k, (spent, reserved) in enumerate(seen):
        # Calls before k settled (the earlier ones by the reserves after them); call k's
        # hold still stands in full, and it is never below what that call used.
        assert spent == sum(r.input_tokens + r.output_tokens for r in rows[:k])
        assert reserved == rows[k].reserved_tokens >= rows[k].input_tokens + rows[k].output_tokens
    state = budget_ledger.ledger().states([counter])[counter.key]
    total = sum(r.input_tokens + r.output_tokens for r in rows)
    assert state is not None and (state.spent_tokens, state.reserved_tokens) == (total, 0)
    assert budget_ledger.ledger_sums(counter)[0] == total
    nothing_held(world.tenant_a)
