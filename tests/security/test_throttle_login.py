"""Console login locks out a username+address after repeated wrong passwords (django-axes):
the right password is refused too until the cool-off ends."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.conftest import World
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's


def login(client: Client, username: str, password: str) -> object:
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


@override_settings(AXES_FAILURE_LIMIT=3)
def test_repeated_wrong_passwords_lock_the_console_login(world: World) -> None:
    attacker = Client(REMOTE_ADDR="127.0.0.21")
    for _ in range(2):
        response = login(attacker, "alice", "guess")
        assert response.status_code == 200  # the form again, with its error
    locked = login(attacker, "alice", "guess")
    assert locked.status_code == 429
    assert b"too many login attempts" in locked.content

    # Locked out: the right password no longer logs in from here.
    refused = login(attacker, "alice", PASSWORD)
    assert refused.status_code == 429
    assert b"too many login attempts" in refused.content
    assert attacker.get("/admin/").status_code == 302  # still not signed in

    # The lock is per username + address: alice elsewhere is not locked out by the attacker.
    elsewhere = Client(REMOTE_ADDR="127.0.0.22")
    assert login(elsewhere, "alice", PASSWORD).status_code == 302
    assert elsewhere.get("/admin/").status_code == 200


@override_settings(AXES_FAILURE_LIMIT=3)
def test_thirty_fast_guesses_get_no_answers(world: World) -> None:
    UserFactory(username="ops", is_staff=True, is_superuser=True)
    attacker = Client(REMOTE_ADDR="127.0.0.23")
    statuses = [login(attacker, "ops", f"guess{i}").status_code for i in range(30)]
    assert statuses[:2] == [200, 200]
    assert set(statuses[2:]) == {429}
