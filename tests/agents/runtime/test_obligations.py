"""A budget's obligations at 80 %: deterministic truncation of the request, never of the
loop's own history."""

from __future__ import annotations

from apps.agents.runtime.loop import LoopConfig, run_turn
from apps.agents.runtime.memory import ScriptedModel
from apps.agents.runtime.obligations import OMITTED, TRIMMED, apply_obligations
from apps.agents.runtime.ports import Reservation
from apps.llm.types import Message, ModelRequest, ToolSpec

from .builders import answer, calls, standard_tools


def spec(name: str) -> ToolSpec:
    return ToolSpec(name=name, description="d" * 500, input_schema={"type": "object"})


def test_compress_keeps_two_exchanges_and_the_last_two_observations_whole() -> None:
    history = [
        m
        for i in range(4)
        for m in (Message(role="user", content=f"q{i}"), Message(role="assistant", content=f"a{i}"))
    ]
    turn = [
        Message(role="user", content="now"),
        *[Message(role="tool", content=str(i) * 1000, tool_call_id=str(i)) for i in range(3)],
    ]
    request = ModelRequest(messages=(Message(role="system", content="sys"), *history, *turn))
    out = apply_obligations(request, {"compress_context"}, used=(), keep_tools=5)
    assert out.messages[0].content == f"sys\n\n{OMITTED}"
    assert [m.content for m in out.messages[1:5]] == ["q2", "a2", "q3", "a3"]
    observations = [m.content for m in out.messages if m.role == "tool"]
    assert observations[0] == "0" * 200 + TRIMMED
    assert observations[1:] == ["1" * 1000, "2" * 1000]
    assert request.messages[-3].content == "0" * 1000  # the original is untouched


def test_trim_keeps_used_tools_and_the_first_of_the_rest_with_short_descriptions() -> None:
    request = ModelRequest(messages=(), tools=tuple(spec(n) for n in "abcdefg"))
    out = apply_obligations(request, {"trim_tools"}, used={"f"}, keep_tools=2)
    assert [t.name for t in out.tools] == ["a", "b", "f"]
    assert {len(t.description) for t in out.tools} == {200}


class ObligingBudget:
    """Asks for every obligation from the second call on."""

    def __init__(self) -> None:
        self.calls = 0

    def reserve(self, *, estimated_tokens, ctx, request=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        wanted = frozenset({"compress_context", "trim_tools"}) if self.calls > 1 else frozenset()
        return Reservation(id=ctx.idempotency_key, tokens=estimated_tokens, obligations=wanted)

    def settle(self, reservation, *, usage, endpoint=""):  # type: ignore[no-untyped-def]
        return None


def test_the_loop_sends_the_smaller_request_and_shortens_later_observations() -> None:
    tools = standard_tools().add(
        "echo", lambda text: text, input_schema={"type": "object"}, description="Echoes."
    )
    model = ScriptedModel(
        [calls(("echo", {"text": "x" * 3000})), calls(("echo", {"text": "y" * 3000})), answer("ok")]
    )
    outcome = run_turn(
        turn_id="t1",
        user_message="go",
        model=model,
        tools=tools,
        budget=ObligingBudget(),
        config=LoopConfig(trim_tools_to=0, compressed_observation_chars=100),
    )
    assert outcome.status == "completed"
    first, second, _ = model.requests
    assert len(first.tools) == len(tools.list_specs())
    assert [t.name for t in second.tools] == ["echo"]  # the used one only
    observations = [r.outputs["content"] for r in outcome.steps if r.kind == "observation"]
    assert len(observations[0]) > 1000  # before any obligation
    assert len(observations[1]) < 200  # under compress_context


def test_compress_keeps_as_many_earlier_exchanges_as_configured() -> None:
    history = [
        m
        for i in range(3)
        for m in (Message(role="user", content=f"q{i}"), Message(role="assistant", content=f"a{i}"))
    ]
    request = ModelRequest(messages=(*history, Message(role="user", content="now")))

    def kept(n: int) -> list[str]:
        out = apply_obligations(
            request, {"compress_context"}, used=(), keep_tools=5, keep_exchanges=n
        )
        return [m.content for m in out.messages if m.role != "system"]

    assert kept(1) == ["q2", "a2", "now"]
    assert kept(0) == ["now"]
    assert kept(5) == ["q0", "a0", "q1", "a1", "q2", "a2", "now"]
