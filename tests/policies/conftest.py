from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.policies.engines.opa import OpaEngine
from apps.policies.engines.rego import RegoEngine
from tests.policies.opa_server import OpaLike


@pytest.fixture(scope="module")
def rego_engine() -> Iterator[RegoEngine]:
    engine = RegoEngine(helpers=1, timeout_s=1.0)
    yield engine
    engine.close()


@pytest.fixture
def opa_server() -> Iterator[OpaLike]:
    server = OpaLike()
    yield server
    server.close()


@pytest.fixture
def opa_engine(opa_server: OpaLike) -> Iterator[OpaEngine]:
    engine = OpaEngine(opa_server.url, timeout_s=2.0)
    yield engine
    engine.close()


# Turns run in-process in these tests (tests/agents' fixture keeps them off any worker).
from tests.agents.conftest import no_dispatch  # noqa: E402,F401
