"""Every model call is priced: an endpoint has both prices or is marked free, or it is never
called. Prices are checked at input (REST and console), and a turn that only an unpriced
endpoint could serve fails saying what to fix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.agents import orchestrator
from apps.agents import services as agent_services
from apps.agents.exceptions import UnpricedEndpoints
from apps.agents.models import TurnStatus
from apps.llm.models import ModelEndpoint
from apps.llm.services import endpoint_save, router_for_tenant
from apps.llm.types import EndpointUnpriced, Message, ModelRequest
from tests.agents.conftest import make_session
from tests.conftest import World, client_for
from tests.llm.servers import FakeModelServer, completion, reply

pytestmark = pytest.mark.django_db

API = "/api/v1/model-endpoints"
REMOTE = {"name": "gpt", "provider": "openai", "model": "gpt-4o-mini"}
REQUEST = ModelRequest(messages=(Message("user", "hello"),), timeout_s=10.0)


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    server = FakeModelServer(default=reply(completion("priced answer"))).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    "price",
    [
        "0",  # zero is not a price: a free endpoint is marked free
        "0.0000",
        "-1",
        "-0.0001",
        "100000",  # absurd
        "99999999.9999",
        "0.00001",  # finer than the 4 places a price has
        "1e3",
        2.5,  # a number, not the documented decimal string
    ],
)
def test_zero_negative_and_absurd_prices_are_refused_at_input(world: World, price: Any) -> None:
    client = client_for(world.tenant_a)
    for field in ("price_input_per_mtok", "price_output_per_mtok"):
        response = client.post(API, {**REMOTE, field: price}, format="json")
        assert response.status_code == 400, (field, price, response.content)
        assert response.json()["code"] == "validation_error"
        assert field in response.json()["details"]
    assert not ModelEndpoint.objects.filter(tenant=world.tenant_a).exists()

    endpoint = endpoint_save(tenant=world.tenant_a, **REMOTE)
    response = client.patch(f"{API}/{endpoint.id}", {"price_input_per_mtok": price}, format="json")
    assert response.status_code == 400
    endpoint.refresh_from_db()
    assert endpoint.price_input_per_mtok is None


def test_the_price_bounds_themselves_are_accepted(world: World) -> None:
    response = client_for(world.tenant_a).post(
        API,
        {**REMOTE, "price_input_per_mtok": "0.0001", "price_output_per_mtok": "99999.9999"},
        format="json",
    )
    assert response.status_code == 201, response.content
    shown = response.json()
    assert (shown["price_input_per_mtok"], shown["price_output_per_mtok"]) == (
        "0.0001",
        "99999.9999",
    )
    assert (shown["is_free"], shown["unpriced"]) == (False, False)


def test_a_free_endpoint_has_no_price(world: World) -> None:
    client = client_for(world.tenant_a)
    both = {**REMOTE, "is_free": True, "price_output_per_mtok": "0.60"}
    response = client.post(API, both, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_endpoint"
    assert "free endpoint has no price" in response.json()["message"]

    priced = client.post(
        API,
        {**REMOTE, "price_input_per_mtok": "0.15", "price_output_per_mtok": "0.60"},
        format="json",
    ).json()
    # Marking a priced endpoint free without clearing its prices is refused, not guessed at.
    response = client.patch(f"{API}/{priced['id']}", {"is_free": True}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_endpoint"
    free = {"is_free": True, "price_input_per_mtok": None, "price_output_per_mtok": None}
    response = client.patch(f"{API}/{priced['id']}", free, format="json")
    assert response.status_code == 200, response.content
    shown = response.json()
    assert shown["is_free"] is True and shown["unpriced"] is False
    assert shown["price_input_per_mtok"] is None and shown["price_output_per_mtok"] is None


def test_new_scripted_and_local_endpoints_are_free_remote_ones_are_not(world: World) -> None:
    client = client_for(world.tenant_a)

    def create(**body: Any) -> dict[str, Any]:
        response = client.post(API, body, format="json")
        assert response.status_code == 201, response.content
        return dict(response.json())

    scripted = create(name="script", provider="scripted", model="s")
    local = create(name="local", provider="local", model="smollm2", base_url="http://x.test/v1")
    remote = create(**REMOTE)
    half = create(name="half", provider="anthropic", model="c", price_input_per_mtok="3.00")
    said_not_free = create(name="s2", provider="scripted", model="s", is_free=False)
    priced_script = create(
        name="s3",
        provider="scripted",
        model="s",
        price_input_per_mtok="1.00",
        price_output_per_mtok="2.00",
    )

    assert [e["is_free"] for e in (scripted, local, priced_script)] == [True, True, False]
    assert [e["unpriced"] for e in (scripted, local, priced_script)] == [False, False, False]
    # Unpriced: kept, shown as such, and never called.
    for endpoint in (remote, half, said_not_free):
        assert endpoint["is_free"] is False and endpoint["unpriced"] is True


def test_an_unpriced_endpoint_is_refused_until_it_is_priced(
    world: World, model_server: FakeModelServer
) -> None:
    client = client_for(world.tenant_a)
    created = client.post(API, {**REMOTE, "base_url": model_server.url}, format="json").json()

    router = router_for_tenant(tenant_id=world.tenant_a.id)
    with pytest.raises(EndpointUnpriced) as caught:
        router.complete(REQUEST, tier="small", sensitivity="internal")
    assert "endpoint 'gpt' has no price: set both prices or mark it free" in str(caught.value)
    assert model_server.received == []  # refused before any connection

    prices = {"price_input_per_mtok": "0.15", "price_output_per_mtok": "0.60"}
    assert client.patch(f"{API}/{created['id']}", prices, format="json").status_code == 200
    router = router_for_tenant(tenant_id=world.tenant_a.id)
    response = router.complete(REQUEST, tier="small", sensitivity="internal")
    assert (response.endpoint, response.text) == ("gpt", "priced answer")
    assert len(model_server.received) == 1


def test_a_turn_only_an_unpriced_endpoint_could_serve_is_refused_saying_what_to_fix(
    world: World, model_server: FakeModelServer
) -> None:
    endpoint = endpoint_save(tenant=world.tenant_a, base_url=model_server.url, **REMOTE)
    agent = agent_services.agent_save(
        tenant=world.tenant_a, name="GPT", slug="gpt", allowed_endpoints=[endpoint]
    )
    session = make_session(agent)

    # At enqueue: nothing could be called, so nothing is queued.
    with pytest.raises(UnpricedEndpoints, match="has no price: set both prices or mark it free"):
        agent_services.turn_enqueue(session=session, message="hello")
    assert not session.turns.exists()

    # Priced when the turn was accepted, unpriced before it ran: it fails at its first call.
    _set_prices(endpoint, Decimal("1"))
    turn = agent_services.turn_enqueue(session=session, message="hello")
    _set_prices(endpoint, None)
    orchestrator.turn_execute(turn_id=turn.id)

    turn.refresh_from_db()
    assert turn.status == TurnStatus.FAILED
    assert "has no price: set both prices or mark it free" in turn.detail
    assert turn.final_answer == ""
    assert model_server.received == []


def _set_prices(endpoint: ModelEndpoint, price: Decimal | None) -> None:
    # updated_at too: the process's cached router is rebuilt when a row changes.
    ModelEndpoint.objects.filter(id=endpoint.id).update(
        price_input_per_mtok=price, price_output_per_mtok=price, updated_at=timezone.now()
    )


# -- the console -----------------------------------------------------------------------


def _form(world: World, **changes: str) -> dict[str, str]:
    form = {
        "tenant": str(world.tenant_a.id),
        "name": "console",
        "provider": "openai",
        "model": "m",
        "base_url": "",
        "tier": "small",
        "context_window": "8192",
        "supports_tools": "on",
        "allowed_sensitivities": '["public"]',
        "price_input_per_mtok": "0.15",
        "price_output_per_mtok": "0.60",
        "timeout_s": "60",
        "priority": "100",
        "options": "{}",
        "is_active": "on",
    }
    form.update(changes)
    return {name: value for name, value in form.items() if value != "-"}


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"price_input_per_mtok": "0"}, "greater than or equal to 0.0001"),
        ({"price_output_per_mtok": "-2"}, "greater than or equal to 0.0001"),
        ({"price_output_per_mtok": "123456"}, "less than or equal to 99999.9999"),
        ({"is_free": "on"}, "A free endpoint has no price"),
    ],
)
def test_the_console_refuses_bad_prices_on_the_form(
    world: World, alice_client: APIClient, changes: dict[str, str], error: str
) -> None:
    response = alice_client.post("/admin/llm/modelendpoint/add/", _form(world, **changes))
    assert response.status_code == 200  # the form again, with the error
    assert error in response.content.decode()
    assert not ModelEndpoint.objects.filter(name="console").exists()


def test_the_console_saves_prices_and_shows_which_endpoints_are_never_called(
    world: World, alice_client: APIClient
) -> None:
    add = "/admin/llm/modelendpoint/add/"
    assert alice_client.post(add, _form(world)).status_code == 302
    priced = ModelEndpoint.objects.get(name="console")
    assert (priced.price_input_per_mtok, priced.price_output_per_mtok) == (
        Decimal("0.15"),
        Decimal("0.60"),
    )
    unpriced = _form(world, name="nobody-priced", price_input_per_mtok="", price_output_per_mtok="")
    assert alice_client.post(add, unpriced).status_code == 302
    # A scripted model added without prices, the box unticked, is free, as over REST.
    scripted = _form(
        world,
        name="scripted",
        provider="scripted",
        price_input_per_mtok="",
        price_output_per_mtok="",
    )
    assert alice_client.post(add, scripted).status_code == 302
    assert ModelEndpoint.objects.get(name="scripted").is_free

    listing = alice_client.get("/admin/llm/modelendpoint/").content.decode()
    # The price column's cells, whatever markup the console's theme gives a cell.
    cells = re.findall(r'class="[^"]*field-price[^"]*"[^>]*>\s*([^<]*?)\s*</td>', listing)
    assert sorted(cells) == sorted(["0.1500 / 0.6000", "no price: never called", "free"])
