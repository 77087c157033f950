"""Key lookup can't tell an existing prefix from an unknown one: both run the same query
(by the full key's hash) and take the same path to the same answer."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.tenants.exceptions import AuthError
from apps.tenants.services import api_key_authenticate, api_key_create
from tests.conftest import World

pytestmark = pytest.mark.django_db


def _lookup(raw: str) -> tuple[str, list[str]]:
    """The refusal code and the SQL the lookup ran, with this key's hash made generic."""
    digest = hashlib.sha256(raw.encode()).hexdigest()
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(AuthError) as refused:
            api_key_authenticate(raw_key=raw)
    sql = [q["sql"] for q in queries.captured_queries]
    assert all(digest in q for q in sql), "the lookup must go by the hash of the whole key"
    return refused.value.code, [q.replace(digest, "<hash>") for q in sql]


def test_unknown_prefix_and_wrong_secret_take_the_same_path(world: World) -> None:
    _, raw = api_key_create(tenant=world.tenant_a, name="k", scopes=["read"])
    _, prefix, secret = raw.split("_", 2)
    wrong_secret = f"wdn_{prefix}_{'A' * len(secret)}"
    unknown_prefix = f"wdn_{'0' * len(prefix)}_{'A' * len(secret)}"

    code_known, sql_known = _lookup(wrong_secret)
    code_unknown, sql_unknown = _lookup(unknown_prefix)

    assert code_known == code_unknown == "invalid_api_key"
    assert len(sql_known) == 1
    assert sql_known == sql_unknown
    # The public prefix plays no part in the query, so its existence can't change it.
    assert prefix not in sql_known[0]
