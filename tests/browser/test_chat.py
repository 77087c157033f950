"""The chat UI at /chat/ in a real browser, against daphne and a Celery worker.

The scripted demo agent (`make run`'s) searches the tenant's memory, asks the time MCP server,
then counts the user's words in the WASM sandbox, then answers. With the demo policy its word
count waits for a person's approval: the turn parks, and a decision from anywhere resumes it.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import pytest

from apps.agents.demo import seed_demo_agents, seed_demo_policies
from apps.agents.models import ActionNode, Agent, AgentSession, SessionEvent, Turn
from apps.approvals.models import ApprovalRequest, ApprovalStatus
from apps.budgets.models import Budget
from tests.agents.conftest import make_session, wait_for_turn
from tests.browser.conftest import LOUD, ROOT, RestartableServer, screenshot, sign_in
from tests.conftest import WorkerProcess, World, client_for

# Without Playwright the module is still collected (and its tests skipped, loudly).
expect = pytest.importorskip("playwright.sync_api", reason=LOUD).expect

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def demo_agent(world: World, *, approval: bool) -> Agent:
    seed_demo_agents(tenant=world.tenant_a)
    if approval:
        seed_demo_policies(tenant=world.tenant_a)
    return Agent.objects.get(tenant=world.tenant_a, slug="demo-scripted")


def open_session(page: Any, session: AgentSession) -> None:
    page.goto(f"/chat/s/{session.id}/")
    expect(page.locator("#conn")).to_have_text("Connected")


def send(page: Any, text: str) -> Turn:
    """Type a message and press Enter; the turn it queued, once the page shows it."""
    count = page.locator("li.turn").count()
    box = page.get_by_label("Message")
    box.fill(text)
    box.press("Enter")
    expect(page.locator("li.turn")).to_have_count(count + 1)
    expect(box).to_have_value("")  # acknowledged: the draft is cleared
    return Turn.objects.get(id=page.locator("li.turn").last.get_attribute("data-turn"))


def turn_item(page: Any, turn: Turn) -> Any:
    return page.locator(f'li.turn[data-turn="{turn.id}"]')


def test_sign_in_with_a_console_account(world: World, server: RestartableServer, new_page: Any):
    demo_agent(world, approval=False)
    page = new_page(server.url)
    page.goto("/chat/")
    expect(page).to_have_url(re.compile(r"/chat/login/\?next=/chat/$"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("don't match")

    sign_in(page, "alice")
    expect(page.get_by_role("heading", name="Chat with an agent")).to_be_visible()
    # Only agents of the person's tenant, and only active ones, can be picked.
    expect(page.get_by_label("Agent")).to_contain_text("Demo agent (scripted model)")
    page.get_by_label("Title (optional)").fill("My first chat")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#conn")).to_have_text("Connected")
    session = AgentSession.objects.get(tenant=world.tenant_a, user=world.alice)
    assert session.title == "My first chat"
    expect(page.get_by_role("link", name="My first chat")).to_have_attribute("aria-current", "page")
    # Rename, then resume it from the list after signing out and in again.
    page.get_by_label("Session title").fill("Renamed chat")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("link", name="Renamed chat")).to_be_visible()
    session.refresh_from_db()
    assert session.title == "Renamed chat"
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "alice")
    page.get_by_role("link", name="Renamed chat").click()
    expect(page).to_have_url(re.compile(f"/chat/s/{session.id}/$"))
    screenshot(page, "signed-in")


def test_chat_with_the_demo_agent_streams_its_steps(
    world: World, celery_worker: WorkerProcess, server: RestartableServer, new_page: Any
) -> None:
    session = make_session(demo_agent(world, approval=False), world.alice)
    page = new_page(server.url)
    sign_in(page, "alice")
    open_session(page, session)
    turn = wait_for_turn(send(page, "three little words"), statuses=("completed", "failed"))
    assert turn.status == "completed", turn.detail
    item = turn_item(page, turn)
    expect(item.locator(".badge")).to_have_text("done")
    expect(item.locator(".user")).to_have_text("three little words")
    expect(item.locator(".answer")).to_contain_text("(scripted demo)")
    # One collapsible card per model step; the tool calls inside them.
    cards = item.locator("details.step")
    expect(cards).to_have_count(ActionNode.objects.filter(turn=turn, kind="model_call").count())
    # The demo agent looks in the tenant's memory first, then asks the time MCP server.
    expect(cards.nth(0)).to_contain_text("Tool: memory_search")
    first = cards.nth(1)
    first.locator("summary").click()
    expect(first).to_contain_text("Tool: get_current_time")
    for label in ("Rationale", "Arguments", "Result", "Policy", "Tokens", "Cost", "Latency"):
        expect(first.locator("dt", has_text=label).first).to_be_visible()
    expect(first.locator('dd[data-fact="Arguments"]')).to_contain_text('"timezone": "UTC"')
    expect(first.locator('dd[data-fact="Policy"]')).to_contain_text("allow")
    expect(cards.nth(2)).to_contain_text("Tool: word_count")
    # Alice (an owner) may see the raw model output: it streamed in token by token.
    assert page.evaluate("window.wardenChat.tokens") > 0
    # The budget meter counts the session's tokens.
    expect(page.locator("#meter-session-text")).to_contain_text(
        re.compile(r"^[1-9]\d* of 6200 tokens")
    )
    cards.nth(1).locator("summary").click()  # closed again: the picture shows both kinds
    cards.nth(2).locator("summary").click()
    page.set_viewport_size({"width": 1100, "height": 1000})
    page.evaluate("window.scrollTo(0, 0)")
    path = screenshot(page, "chat", full_page=False)
    if os.environ.get("WARDEN_README_SCREENSHOTS") == "1":
        shutil.copyfile(path, ROOT / "docs" / "img" / "chat.png")


def test_approve_a_pending_step_from_the_chat_while_a_later_message_waits_queued(
    world: World, celery_worker: WorkerProcess, server: RestartableServer, new_page: Any
) -> None:
    # Bob (a member) chats; Alice (an owner, so an approver) decides from her own chat page.
    # Nobody approves their own turn's call (apps/approvals), so it takes the two of them.
    session = make_session(demo_agent(world, approval=True), world.bob)
    bobs = new_page(server.url)
    sign_in(bobs, "bob")
    open_session(bobs, session)
    first = wait_for_turn(send(bobs, "count these four words"), statuses=("waiting", "completed"))
    assert first.status == "waiting", first.detail
    item = turn_item(bobs, first)
    expect(item.locator(".badge")).to_have_text("waiting for approval")
    box = item.get_by_role("group", name="Approval for word_count")
    expect(box).to_contain_text("Waiting for a person to approve")
    expect(box.get_by_role("button")).to_have_count(0)  # Bob may not decide
    # Bob may not read the model's private output: no tokens reached his page; the
    # step's rationale did.
    assert bobs.evaluate("window.wardenChat.tokens") == 0
    expect(item.locator('dd[data-fact="Rationale"]').nth(1)).to_contain_text("time MCP server")

    # A message while the first turn is unfinished waits its turn, and says so.
    second = send(bobs, "and then this")
    assert second.seq == first.seq + 1
    expect(turn_item(bobs, second).locator(".badge")).to_have_text("queued")

    alices = new_page(server.url)
    sign_in(alices, "alice")
    open_session(alices, session)
    approval = turn_item(alices, first).get_by_role("group", name="Approval for word_count")
    approval.get_by_label("Rationale").fill("fine by me")
    screenshot(alices, "approval-pending")
    approval.get_by_role("button", name="Approve").click()
    expect(approval).to_contain_text("Approved by alice")
    # Bob's page follows live: the decision, then the answer.
    expect(box).to_contain_text("Approved by alice")
    expect(box).to_contain_text("fine by me")
    expect(item.locator(".badge")).to_have_text("done", timeout=60_000)
    expect(item.locator(".answer")).to_contain_text("count these four words")
    decided = ApprovalRequest.objects.get(turn_id=first.id)
    assert (decided.status, decided.rationale) == (ApprovalStatus.APPROVED, "fine by me")
    assert decided.decided_by == world.alice
    # Then the queued turn ran, and parks on its own word count.
    expect(turn_item(bobs, second).locator(".badge")).to_have_text(
        "waiting for approval", timeout=60_000
    )


def test_reconnects_after_a_server_restart_mid_turn_without_duplicates_or_gaps(
    world: World, celery_worker: WorkerProcess, server: RestartableServer, new_page: Any
) -> None:
    session = make_session(demo_agent(world, approval=True), world.alice)
    page = new_page(server.url)
    sign_in(page, "alice")
    open_session(page, session)
    turn = wait_for_turn(send(page, "survive a restart"), statuses=("waiting", "completed"))
    assert turn.status == "waiting"
    item = turn_item(page, turn)
    expect(item.locator(".badge")).to_have_text("waiting for approval")
    # Alice asked for this turn: she may reject its call, not approve it (four eyes).
    own = item.get_by_role("group", name="Approval for word_count")
    expect(own.get_by_role("button", name="Reject")).to_be_visible()
    expect(own.get_by_role("button", name="Approve")).to_have_count(0)
    expect(own).to_contain_text("another approver must approve it")

    # The web server goes away mid-turn; the page says so and keeps trying.
    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    # Meanwhile the turn goes on: approved through the API, run to the end by the worker.
    approval = ApprovalRequest.objects.get(turn_id=turn.id)
    response = client_for(world.tenant_a, ["admin"]).post(
        f"/api/v1/approvals/{approval.id}/approve",
        {"rationale": "while you were away"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    turn = wait_for_turn(turn, statuses=("completed", "failed"))
    assert turn.status == "completed", turn.detail

    server.start()
    expect(page.locator("#conn")).to_have_text("Connected", timeout=30_000)
    expect(item.locator(".badge")).to_have_text("done")
    expect(item.locator(".answer")).to_contain_text("survive a restart")
    expect(item.get_by_role("group", name="Approval for word_count")).to_contain_text(
        "while you were away"
    )
    # Every durable event exactly once, none missing; one card per step, one box per call.
    shown = page.evaluate("window.wardenChat.handled")
    stored = list(
        SessionEvent.objects.filter(session=session).order_by("id").values_list("id", flat=True)
    )
    assert sorted(shown) == stored
    assert len(shown) == len(set(shown))
    models = ActionNode.objects.filter(turn=turn, kind="model_call").count()
    expect(item.locator("details.step")).to_have_count(models)
    for node in ActionNode.objects.filter(turn=turn, kind="tool_call"):
        expect(item.locator(f'[data-node="{node.node_id}"]')).to_have_count(1)
    screenshot(page, "reconnected")


def test_a_turn_stopped_by_its_budget_says_so_and_what_to_do(
    world: World, celery_worker: WorkerProcess, server: RestartableServer, new_page: Any
) -> None:
    agent = demo_agent(world, approval=False)
    # The demo's session budget, cut below one model call's hold.
    Budget.objects.filter(tenant=world.tenant_a, agent_id=agent.id).update(max_tokens=100)
    session = make_session(agent, world.alice)
    page = new_page(server.url)
    sign_in(page, "alice")
    open_session(page, session)
    turn = wait_for_turn(send(page, "too expensive"), statuses=("completed", "failed"))
    assert (turn.status, turn.outcome) == ("failed", "budget_exceeded")
    item = turn_item(page, turn)
    expect(item.locator(".badge")).to_have_text("failed")
    expect(item.get_by_role("alert")).to_contain_text("budget")
    expect(item.get_by_role("alert")).to_contain_text("Start a new session")
    expect(page.locator("#meter-session-text")).to_contain_text("of 100 tokens")
    screenshot(page, "budget-exceeded")


def test_another_tenants_session_is_not_found(
    world: World, server: RestartableServer, new_page: Any
) -> None:
    alices = make_session(demo_agent(world, approval=False), world.alice)
    page = new_page(server.url)
    sign_in(page, "charlie")
    response = page.goto(f"/chat/s/{alices.id}/")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    # Nor does its budget meter, or a rename, reach it.
    assert page.request.get(f"/chat/s/{alices.id}/meter").status == 404
    # Nor the websocket: the handshake is refused, and the page (were it rendered) would say so.
    refused = page.evaluate(
        """(url) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onopen = () => resolve("open");
            ws.onclose = (e) => resolve(`closed ${e.code}`);
        })""",
        f"ws://127.0.0.1:{server.port}/ws/sessions/{alices.id}/?tenant=globex",
    )
    assert refused.startswith("closed")
    screenshot(page, "not-found")


def test_an_expired_login_goes_to_sign_in_and_keeps_the_unsent_message(
    world: World, server: RestartableServer, new_page: Any
) -> None:
    session = make_session(demo_agent(world, approval=False), world.alice)
    page = new_page(server.url)
    sign_in(page, "alice")
    open_session(page, session)
    page.get_by_label("Message").fill("half-written thought")
    expect(page.locator("#meter-session-text")).to_contain_text("tokens")  # the page settled
    # The login ends (expired, or signed out elsewhere), then the socket drops.
    page.context.clear_cookies()
    page.evaluate("window.wardenChat.socket.close()")
    expect(page).to_have_url(re.compile(r"/chat/login/\?expired=1"))
    expect(page.locator("#expired-note")).to_contain_text("Your sign-in has expired")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(f"/chat/s/{session.id}/$"))
    expect(page.get_by_label("Message")).to_have_value("half-written thought")
    assert not Turn.objects.filter(session=session).exists()


def test_phone_sized_screen_and_keyboard_only(
    world: World, server: RestartableServer, new_page: Any
) -> None:
    demo_agent(world, approval=False)
    page = new_page(server.url, viewport={"width": 390, "height": 844})
    sign_in(page, "alice")
    # Keyboard only: tab to the agent picker and start a session with Enter.
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.get_by_label("Agent").focus()
    page.keyboard.press("Tab")  # the title
    page.keyboard.press("Tab")  # Start
    expect(page.locator(":focus")).to_have_text("Start")
    page.keyboard.press("Enter")
    expect(page.locator("#conn")).to_have_text("Connected")
    # Nothing wider than the screen; the message box and its label are there.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    expect(page.get_by_label("Message")).to_be_visible()
    expect(page.locator("#stream")).to_have_attribute("aria-live", "polite")
    screenshot(page, "phone")
