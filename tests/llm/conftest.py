from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.llm.servers import Behaviour, FakeModelServer


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakeModelServer]]:
    """Start fake model servers; all are stopped at teardown."""
    started: list[FakeModelServer] = []

    def make(
        *behaviours: Behaviour, default: Behaviour | None = None, keep_alive: bool = False
    ) -> FakeModelServer:
        server = FakeModelServer(default=default, keep_alive=keep_alive).play(*behaviours).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
