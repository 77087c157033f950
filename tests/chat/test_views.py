"""The chat's pages without a browser: who may open, rename, meter and start what.

The browser tests (tests/browser) show the same pages working; these show the requests an
attacker or a curious member would send, refused."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from apps.agents.models import AgentSession
from apps.budgets.models import UsageRecord
from apps.tenants.models import Role
from tests.agents.conftest import make_agent, make_session
from tests.conftest import World
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def logged_in(user: object) -> Client:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client


def test_signed_out_people_are_sent_to_the_chat_sign_in(world: World) -> None:
    response = Client().get("/chat/")
    assert response.status_code == 302
    assert response["Location"] == "/chat/login/?next=/chat/"
    page = Client().get("/chat/login/?expired=1")
    assert b"Your sign-in has expired" in page.content
    # The budget meter answers JSON 401 (the page then sends the person to sign in).
    session = make_session(make_agent(world.tenant_a, None), world.alice)
    meter = Client().get(f"/chat/s/{session.id}/meter")
    assert meter.status_code == 401
    assert meter.json()["code"] == "not_authenticated"


def test_sign_in_locks_out_after_repeated_failures(world: World) -> None:
    client = Client()
    for _ in range(5):
        response = client.post("/chat/login/", {"username": "alice", "password": "guess"})
        assert response.status_code in (200, 429)
    # Even the right password is refused now (django-axes, as on the console's login).
    response = client.post("/chat/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_sign_in_with_the_right_password_opens_the_chat(world: World) -> None:
    client = Client()
    response = client.post("/chat/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200


def test_another_tenants_session_is_404_on_every_chat_route(world: World) -> None:
    session = make_session(make_agent(world.tenant_a, None), world.alice)
    session.title = "alice's"
    session.save()
    charlie = logged_in(world.charlie)
    assert charlie.get(f"/chat/s/{session.id}/").status_code == 404
    assert charlie.get(f"/chat/s/{session.id}/meter").status_code == 404
    assert charlie.post(f"/chat/s/{session.id}/rename", {"title": "pwned"}).status_code == 404
    assert charlie.get(f"/chat/s/{uuid.uuid4()}/").status_code == 404
    page = charlie.get(f"/chat/s/{session.id}/")
    assert b"Not found" in page.content and b"alice" not in page.content
    session.refresh_from_db()
    assert session.title == "alice's"
    # A member sees their own sessions only (operators and owners see the tenant's).
    bob = logged_in(world.bob)
    assert bob.get(f"/chat/s/{session.id}/").status_code == 404
    assert logged_in(world.alice).get(f"/chat/s/{session.id}/").status_code == 200


def test_a_session_starts_only_with_an_agent_of_ones_tenant_and_the_right_role(
    world: World,
) -> None:
    theirs = make_agent(world.tenant_b, None, slug="globex-agent")
    ours = make_agent(world.tenant_a, None, slug="acme-agent")
    bob = logged_in(world.bob)
    response = bob.post("/chat/sessions/new", {"agent": str(theirs.id)})
    assert response.status_code == 302 and response["Location"] == "/chat/"
    assert not AgentSession.objects.filter(agent=theirs).exists()
    response = bob.post("/chat/sessions/new", {"agent": "not-a-uuid"})
    assert response.status_code == 302 and not AgentSession.objects.exists()

    response = bob.post("/chat/sessions/new", {"agent": str(ours.id), "title": "hello"})
    created = AgentSession.objects.get(agent=ours)
    assert response["Location"] == f"/chat/s/{created.id}/"
    assert (created.user, created.title) == (world.bob, "hello")

    # A viewer reads but starts nothing: the same `session.manage` permission as the API.
    viewer = UserFactory(username="vera")
    MembershipFactory(tenant=world.tenant_a, user=viewer, role=Role.VIEWER)
    page = logged_in(viewer).get("/chat/")
    assert b"New session" not in page.content
    logged_in(viewer).post("/chat/sessions/new", {"agent": str(ours.id)})
    assert AgentSession.objects.filter(agent=ours).count() == 1


def test_rename_and_the_budget_meter(world: World) -> None:
    agent = make_agent(world.tenant_a, None, max_tokens_per_session=1000)
    session = make_session(agent, world.bob)
    bob = logged_in(world.bob)
    response = bob.post(f"/chat/s/{session.id}/rename", {"title": "  Trip plans  "})
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.title == "Trip plans"
    bob.post(f"/chat/s/{session.id}/rename", {"title": "x" * 201})
    session.refresh_from_db()
    assert session.title == "Trip plans"

    for index, (sid, tokens) in enumerate([(session.id, 150), (uuid.uuid4(), 50)]):
        UsageRecord.objects.create(
            tenant=world.tenant_a,
            reservation_id=f"n{index}@1",
            session_id=sid,
            user=world.bob,
            input_tokens=tokens - 10,
            output_tokens=10,
        )
    UsageRecord.objects.create(  # someone else's spend is not Bob's day
        tenant=world.tenant_a, reservation_id="other@1", user=world.alice, input_tokens=999
    )
    meter = bob.get(f"/chat/s/{session.id}/meter").json()
    assert meter["session"] == {"tokens": 150, "cost": "0.0000", "limit": 1000, "percent": 15}
    assert meter["day"]["tokens"] == 200 and meter["day"]["limit"] is None
