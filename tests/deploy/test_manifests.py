"""deploy/: the Procfile, the compose file and the Kubernetes manifests agree with each other
and with the code.

Each check (tests/deploy/checks.py) returns the problems it finds. The real files must have
none (`test_deploy_files`), and each check must find the realistic mistake it exists for in a
copy of the files with that mistake made (`test_checks_catch_realistic_mistakes`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.deploy.checks import (
    CHECKS,
    K8S,
    SECRET_EXAMPLE,
    Deploy,
    check_commands_follow_the_procfile,
    check_compose,
    check_env_sources_exist,
    check_env_vars_are_read_by_the_app,
    check_images_and_ports,
    check_k8s_schema,
    check_kustomization,
    check_pod_security,
    check_probes,
    check_secrets_stay_secret,
    check_worker_autoscaling,
    container,
    containers,
    k8s_find,
    load,
    pod_spec,
)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_deploy_files(check: Callable[[Deploy], list[str]]) -> None:
    assert check(load()) == []


# --------------------------------------------------------------------------- mistakes


def _k8s(d: Deploy, process: str) -> dict[str, Any]:
    c = container(d, process)
    assert c is not None
    return c


def _doc(d: Deploy, kind: str, name: str | None = None) -> dict[str, Any]:
    return k8s_find(d, kind, name)[0]


def _typo_in_configmap(d: Deploy) -> None:
    _doc(d, "ConfigMap")["data"]["WARDEN_WORKER_TURN"] = "32"


def _typo_in_compose(d: Deploy) -> None:
    d.compose["services"]["worker"]["environment"]["WARDEN_LOG_FROMAT"] = "json"


def _procfile_variable_typo(d: Deploy) -> None:
    d.procfile_text = d.procfile_text.replace(
        "celery -A config worker -l INFO", "celery -A config worker -l ${WARDEN_LOGLEVEL:-INFO}"
    )


def _configmap_ref_typo(d: Deploy) -> None:
    _k8s(d, "worker")["envFrom"][0]["configMapRef"]["name"] = "warden-conf"


def _env_example_typo(d: Deploy) -> None:
    d.env_example["DJANGO_ALLOWED_HOST"] = d.env_example.pop("DJANGO_ALLOWED_HOSTS")


def _typo_in_container_env(d: Deploy) -> None:
    _k8s(d, "web")["env"][0]["name"] = "WARDEN_DB_POOLSIZE"


def _worker_command_drifts(d: Deploy) -> None:
    _k8s(d, "worker")["command"] += ["-Q", "turns"]


def _compose_beat_drifts(d: Deploy) -> None:
    d.compose["services"]["beat"]["command"] = ["celery", "-A", "config", "beat"]


def _liveness_on_readyz(d: Deploy) -> None:
    _k8s(d, "web")["livenessProbe"]["httpGet"]["path"] = "/readyz"


def _probe_path_missing(d: Deploy) -> None:
    _k8s(d, "web")["readinessProbe"]["httpGet"]["path"] = "/ready"


def _probe_host_refused(d: Deploy) -> None:
    _doc(d, "ConfigMap")["data"]["DJANGO_ALLOWED_HOSTS"] = "warden.example.com"


def _worker_probe_checks_beat(d: Deploy) -> None:
    _k8s(d, "worker")["livenessProbe"]["exec"]["command"][3] = "beat"


def _scaled_object_on_web(d: Deploy) -> None:
    _doc(d, "ScaledObject")["spec"]["scaleTargetRef"]["name"] = "warden-web"


def _scaled_object_on_wrong_queue(d: Deploy) -> None:
    _doc(d, "ScaledObject")["spec"]["triggers"][0]["metadata"]["listName"] = "default"


def _scaled_object_on_wrong_db(d: Deploy) -> None:
    _doc(d, "Secret")["stringData"]["REDIS_URL"] = "redis://redis:6379/1"


def _worker_replicas_fight_keda(d: Deploy) -> None:
    _doc(d, "Deployment", "warden-worker")["spec"]["replicas"] = 2


def _image_differs(d: Deploy) -> None:
    _k8s(d, "beat")["image"] = "warden-beat"


def _port_differs(d: Deploy) -> None:
    _k8s(d, "web")["ports"][0]["containerPort"] = 8080


def _k8s_field_typo(d: Deploy) -> None:
    web = _k8s(d, "web")
    web["readinessprobe"] = web.pop("readinessProbe")


def _secret_example_applied(d: Deploy) -> None:
    d.kustomization["resources"].append(SECRET_EXAMPLE)


def _manifest_left_out(d: Deploy) -> None:
    d.kustomization["resources"].remove("keda.yaml")


def _runs_as_root(d: Deploy) -> None:
    del pod_spec(_doc(d, "Job"))["securityContext"]["runAsNonRoot"]


def _no_writable_tmp(d: Deploy) -> None:
    _k8s(d, "beat")["volumeMounts"] = []


def _beat_rolls(d: Deploy) -> None:
    _doc(d, "Deployment", "warden-beat")["spec"]["strategy"] = {"type": "RollingUpdate"}


def _no_memory_limit(d: Deploy) -> None:
    del _k8s(d, "worker")["resources"]["limits"]["memory"]


def _secret_in_configmap(d: Deploy) -> None:
    _doc(d, "ConfigMap")["data"]["DJANGO_SECRET_KEY"] = "s3cr3t"


def _compose_secret_literal(d: Deploy) -> None:
    d.compose["services"]["web"]["environment"]["DJANGO_SECRET_KEY"] = "hunter2"


def _env_example_incomplete(d: Deploy) -> None:
    del d.env_example["POSTGRES_PASSWORD"]


def _compose_key_typo(d: Deploy) -> None:
    worker = d.compose["services"]["worker"]
    worker["healthchek"] = worker.pop("healthcheck")


def _compose_starts_before_migrations(d: Deploy) -> None:
    d.compose["services"]["worker"]["depends_on"]["migrate"] = {"condition": "service_started"}


def _compose_wrong_database_host(d: Deploy) -> None:
    env = d.compose["services"]["web"]["environment"]
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("@postgres:", "@db:")


MISTAKES = [
    (_typo_in_configmap, check_env_vars_are_read_by_the_app),
    (_typo_in_compose, check_env_vars_are_read_by_the_app),
    (_typo_in_container_env, check_env_vars_are_read_by_the_app),
    (_procfile_variable_typo, check_env_vars_are_read_by_the_app),
    (_configmap_ref_typo, check_env_sources_exist),
    (_worker_command_drifts, check_commands_follow_the_procfile),
    (_compose_beat_drifts, check_commands_follow_the_procfile),
    (_liveness_on_readyz, check_probes),
    (_probe_path_missing, check_probes),
    (_probe_host_refused, check_probes),
    (_worker_probe_checks_beat, check_probes),
    (_scaled_object_on_web, check_worker_autoscaling),
    (_scaled_object_on_wrong_queue, check_worker_autoscaling),
    (_scaled_object_on_wrong_db, check_worker_autoscaling),
    (_worker_replicas_fight_keda, check_worker_autoscaling),
    (_image_differs, check_images_and_ports),
    (_port_differs, check_images_and_ports),
    (_k8s_field_typo, check_k8s_schema),
    (_secret_example_applied, check_kustomization),
    (_manifest_left_out, check_kustomization),
    (_runs_as_root, check_pod_security),
    (_no_writable_tmp, check_pod_security),
    (_beat_rolls, check_pod_security),
    (_no_memory_limit, check_pod_security),
    (_secret_in_configmap, check_secrets_stay_secret),
    (_compose_secret_literal, check_secrets_stay_secret),
    (_env_example_incomplete, check_secrets_stay_secret),
    (_compose_key_typo, check_compose),
    (_compose_starts_before_migrations, check_compose),
    (_compose_wrong_database_host, check_compose),
    (_env_example_typo, check_compose),
]


@pytest.mark.parametrize(
    ("mistake", "check"), MISTAKES, ids=[m.__name__.strip("_") for m, _ in MISTAKES]
)
def test_checks_catch_realistic_mistakes(
    mistake: Callable[[Deploy], None], check: Callable[[Deploy], list[str]]
) -> None:
    d = load()
    mistake(d)
    assert check(d) != []


def test_every_check_is_shown_to_catch_a_mistake() -> None:
    assert {check for _, check in MISTAKES} == set(CHECKS)


# --------------------------------------------------------------------------- kustomize


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_builds_the_manifests_with_the_image_set() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=True
    )
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    expected = sum(len(load().k8s[name]) for name in load().kustomization["resources"])
    assert len(docs) == expected
    image = load().kustomization["images"][0]
    images = {
        c["image"] for doc in docs if doc["kind"] in {"Deployment", "Job"} for c in containers(doc)
    }
    assert images == {f"{image['newName']}:{image['newTag']}"}
