"""daphne runs requests side by side, and each gives its database connection back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from apps.tenants import services
from tests.conftest import LiveServer, World, _test_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_requests_share_a_small_pool_and_give_connections_back(world: World) -> None:
    # Requests run on the loop's executor threads. If a thread kept the connection of the
    # request it ran, three connections would be taken by the first three threads for good and
    # the other threads' requests would wait out the pool's timeout and fail.
    _, raw = services.api_key_create(tenant=world.tenant_a, name="pool", scopes=["admin"])
    server = LiveServer({**_test_env(), "WARDEN_DB_POOL_SIZE": "3", "WARDEN_DB_POOL_TIMEOUT": "3"})
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {raw}"}, timeout=30
        ) as client:

            def get(_: int) -> int:
                return client.get("/api/v1/agents").status_code

            with ThreadPoolExecutor(12) as pool:
                statuses = list(pool.map(get, range(96)))
        assert statuses == [200] * 96
    finally:
        server.stop()
