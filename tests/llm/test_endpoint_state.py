"""An endpoint's state (building / starting / ready / failed / off), as the console and the
API show it, and how the local model's supervisor moves it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from apps.llm.local_models import LocalModelSupervisor
from apps.llm.models import EndpointState, ModelEndpoint
from apps.llm.services import endpoint_save, endpoint_state_set
from apps.tenants.models import Tenant
from tests.conftest import World, client_for

BASE_URL = "http://127.0.0.1:18081/v1"


def _local(tenant: Tenant, name: str = "local-model") -> ModelEndpoint:
    return endpoint_save(
        tenant=tenant,
        name=name,
        provider="local",
        model="smollm2",
        base_url=BASE_URL,
        supports_tools=False,
        supports_json_schema=True,
    )


@pytest.mark.django_db
def test_the_api_shows_the_state_and_nobody_can_set_it(world: World, bob_client: APIClient) -> None:
    endpoint = endpoint_state_set(
        endpoint=_local(world.tenant_a),
        state=EndpointState.BUILDING,
        detail="compiling llama.cpp; progress in var/local-llm-build.log",
    )
    admin = client_for(world.tenant_a, ["admin"])
    for client in (admin, bob_client):  # admins and members alike
        listed = client.get("/api/v1/model-endpoints").json()["results"][0]
        detail = client.get(f"/api/v1/model-endpoints/{endpoint.id}").json()
        for shown in (listed, detail):
            assert shown["state"] == "building"
            assert "var/local-llm-build.log" in shown["state_detail"]
            assert shown["state_changed_at"]

    # The state is the platform's word, not the operator's: writing it is refused.
    refused = admin.patch(
        f"/api/v1/model-endpoints/{endpoint.id}", {"state": "ready"}, format="json"
    )
    assert refused.status_code == 400
    endpoint.refresh_from_db()
    assert endpoint.state == EndpointState.BUILDING

    # A new remote endpoint is ready at once.
    created = admin.post(
        "/api/v1/model-endpoints",
        {"name": "remote", "provider": "openai", "model": "gpt", "base_url": "https://x.test"},
        format="json",
    )
    assert created.status_code == 201 and created.json()["state"] == "ready"


@pytest.mark.django_db
def test_the_console_lists_and_shows_the_state(world: World, alice_client: APIClient) -> None:
    endpoint = endpoint_state_set(
        endpoint=_local(world.tenant_a),
        state=EndpointState.FAILED,
        detail="the build failed (exit 1): no C++ compiler",
    )
    listing = alice_client.get("/admin/llm/modelendpoint/").content.decode()
    assert "Failed" in listing
    page = alice_client.get(f"/admin/llm/modelendpoint/{endpoint.id}/change/").content.decode()
    assert "no C++ compiler" in page


def _supervisor(tmp_path: Path, build: list[str], stop: threading.Event) -> LocalModelSupervisor:
    return LocalModelSupervisor(
        model="smollm2", port=18081, var_dir=tmp_path, stop=stop, build_command=build
    )


@pytest.mark.django_db
def test_a_failed_build_marks_every_endpoint_of_the_server_failed_with_the_reason(
    world: World, tmp_path: Path
) -> None:
    ours = [_local(world.tenant_a), _local(world.tenant_b)]
    elsewhere = endpoint_save(
        tenant=world.tenant_a,
        name="other",
        provider="local",
        model="m",
        base_url="http://127.0.0.1:9/v1",
    )
    build = ["sh", "-c", "echo '[1/193] compiling ggml'; echo 'error: no C++ compiler' >&2; exit 3"]
    supervisor = _supervisor(tmp_path, build, threading.Event())

    assert supervisor.build() is False

    for endpoint in ours:
        endpoint.refresh_from_db()
        assert endpoint.state == EndpointState.FAILED
        assert "exit 3" in endpoint.state_detail
        assert "error: no C++ compiler" in endpoint.state_detail
        assert str(tmp_path / "local-llm-build.log") in endpoint.state_detail
    elsewhere.refresh_from_db()
    assert elsewhere.state == EndpointState.READY
    assert "[1/193] compiling ggml" in (tmp_path / "local-llm-build.log").read_text()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.django_db(transaction=True)
def test_stopping_make_run_mid_build_stops_the_whole_build(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = _local(world.tenant_a)
    started = tmp_path / "compiler.pid"
    # A build whose "compiler" is a grandchild, as g++ is under pip and ninja.
    build = ["sh", "-c", f"sleep 300 & echo $! > {started}.tmp; mv {started}.tmp {started}; wait"]
    stop = threading.Event()
    supervisor = _supervisor(tmp_path, build, stop)
    monkeypatch.setattr(supervisor, "installed", lambda: None)  # llama.cpp not built yet
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    try:
        # Wait for the build to be under way (a condition, polled; not a timed sleep).
        while not started.exists():
            assert runner.is_alive(), "the supervisor ended before the build started"
            stop.wait(0.05)
        endpoint.refresh_from_db()
        assert endpoint.state == EndpointState.BUILDING
        compiler = int(started.read_text())
        assert _alive(compiler)
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert not _alive(compiler), "the build's compiler outlived `make run`"
    endpoint.refresh_from_db()
    assert endpoint.state == EndpointState.OFF
    assert "stopped" in endpoint.state_detail
