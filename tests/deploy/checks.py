"""Checks of deploy/: the Procfile, the compose file and the Kubernetes manifests agree with
each other and with the code. Each check returns the problems it finds (test_manifests.py
runs them on the real files and on copies with a realistic mistake made)."""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import yaml
from celery.bin.beat import beat as celery_beat_command
from celery.bin.worker import worker as celery_worker_command
from django.http.request import validate_host
from django.urls import Resolver404, resolve

from apps.core import views as core_views
from config import heartbeat
from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SECRET_EXAMPLE = "secret.example.yaml"
# The oldest Kubernetes the manifests are checked against.
K8S_VERSION = "1.30"

# Procfile process -> (compose service, Kubernetes kind, Kubernetes name, container).
PROCESSES = {
    "release": ("migrate", "Job", "warden-migrate", "migrate"),
    "web": ("web", "Deployment", "warden-web", "web"),
    "worker": ("worker", "Deployment", "warden-worker", "worker"),
    "beat": ("beat", "Deployment", "warden-beat", "beat"),
}
# Variables a command line reads that are no setting: the Procfile's web port.
PROCESS_VARIABLES = {"PORT"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEYS?$|DATABASE_URL|REDIS_URL")


# --------------------------------------------------------------------------- loading


@dataclass
class Deploy:
    procfile_text: str
    compose: dict[str, Any]  # YAML merge keys applied, ${…} not interpolated
    env_example: dict[str, str]  # deploy/.env.example
    kustomization: dict[str, Any]
    k8s: dict[str, list[dict[str, Any]]]  # file name -> its documents
    dockerfile: str

    @property
    def procfile(self) -> dict[str, list[str]]:
        return _procfile(self.procfile_text)


def _procfile(text: str) -> dict[str, list[str]]:
    processes = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            # ${VAR:-default} as the shell expands it when VAR is unset.
            command = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", command)
            processes[name.strip()] = shlex.split(command)
    return processes


def _env_file(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


@functools.cache
def _load() -> Deploy:
    return Deploy(
        procfile_text=(DEPLOY / "Procfile").read_text(),
        compose=yaml.safe_load((DEPLOY / "compose.yaml").read_text()),
        env_example=_env_file((DEPLOY / ".env.example").read_text()),
        kustomization=yaml.safe_load((K8S / "kustomization.yaml").read_text()),
        k8s={
            path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
            for path in sorted(K8S.glob("*.yaml"))
            if path.name != "kustomization.yaml"
        },
        dockerfile=(DEPLOY / "Dockerfile").read_text(),
    )


def load() -> Deploy:
    return copy.deepcopy(_load())


# --------------------------------------------------------------------------- helpers


_INTERPOLATION = re.compile(r"\$(?:\$|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def interpolate(value: Any, env: dict[str, str], problems: list[str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, problems) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match[1] or match[4]
        operator, argument = match[2] or "", match[3] or ""
        unset = name not in env or (operator.startswith(":") and env[name] == "")
        if operator.endswith("?") and unset:
            problems.append(f"compose needs {name} ({argument}), .env.example lacks it")
            return ""
        if operator.endswith("-") and unset:
            return argument
        return env.get(name, "")

    return _INTERPOLATION.sub(one, value)


def compose_variables(compose: dict[str, Any]) -> set[str]:
    text = json.dumps(compose)
    return {m[1] or m[4] for m in _INTERPOLATION.finditer(text) if m[0] != "$$"}


def compose_resolved(d: Deploy) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    return interpolate(d.compose, d.env_example, problems), problems


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the Warden image (the others are PostgreSQL and Redis)."""
    return {n: s for n, s in compose["services"].items() if "build" in s}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def k8s_docs(d: Deploy) -> Iterator[dict[str, Any]]:
    for docs in d.k8s.values():
        yield from docs


def k8s_find(d: Deploy, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for doc in k8s_docs(d)
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def workloads(d: Deploy) -> list[dict[str, Any]]:
    return k8s_find(d, "Deployment") + k8s_find(d, "Job")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any], *, init: bool = True) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*(spec.get("initContainers") or [] if init else []), *spec["containers"]]


def container(d: Deploy, process: str) -> dict[str, Any] | None:
    _, kind, name, container_name = PROCESSES[process]
    for doc in k8s_find(d, kind, name):
        for c in containers(doc, init=False):
            if c["name"] == container_name:
                return c
    return None


def argv(c: dict[str, Any]) -> list[str]:
    return [str(a) for a in [*(c.get("command") or []), *(c.get("args") or [])]]


def configmap(d: Deploy) -> dict[str, str]:
    maps = k8s_find(d, "ConfigMap")
    return {k: str(v) for m in maps for k, v in (m.get("data") or {}).items()}


def secret_example(d: Deploy) -> dict[str, str]:
    docs = d.k8s.get(SECRET_EXAMPLE, [])
    return {k: str(v) for doc in docs for k, v in (doc.get("stringData") or {}).items()}


@functools.cache
def app_env_names() -> frozenset[str]:
    """Every environment variable the code reads: the typed readers of config.env (each also
    as <NAME>_FILE), os.environ / os.getenv, and the options Celery's command line takes
    from CELERY_WORKER_* / CELERY_BEAT_* (click's automatic variables)."""
    readers = {"env_str", "env_int", "env_float", "env_bool", "env_list", "env_json"}
    names: set[str] = set()

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
            isinstance(node, ast.Name) and node.id == "environ"
        )

    def constant(node: ast.AST) -> str | None:
        return (
            node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
        )

    sources = [*(ROOT / "config").rglob("*.py"), *(ROOT / "apps").rglob("*.py"), ROOT / "manage.py"]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and node.args and (name := constant(node.args[0])):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if called in readers:
                    names |= {name, f"{name}_FILE"}
                elif called == "getenv" or (
                    isinstance(func, ast.Attribute)
                    and called in {"get", "setdefault", "pop"}
                    and is_environ(func.value)
                ):
                    names.add(name)
            elif isinstance(node, ast.Subscript) and is_environ(node.value):
                if name := constant(node.slice):
                    names.add(name)
    for prefix, command in (("WORKER", celery_worker_command), ("BEAT", celery_beat_command)):
        names |= {f"CELERY_{prefix}_{p.name.upper()}" for p in command.params if p.name}
    return frozenset(names)


def url_view(path: str) -> Callable[..., Any] | None:
    try:
        return resolve(path).func
    except Resolver404:
        return None


# --------------------------------------------------------------------------- checks


def check_commands_follow_the_procfile(d: Deploy) -> list[str]:
    compose, _ = compose_resolved(d)
    problems = []
    for process, (service, kind, name, _) in PROCESSES.items():
        expected = d.procfile.get(process)
        if expected is None:
            problems.append(f"Procfile has no {process!r} process")
            continue
        got = (compose["services"].get(service) or {}).get("command")
        if isinstance(got, str):
            got = shlex.split(got)
        if got != expected:
            problems.append(f"compose {service}: {got} is not the Procfile's {expected}")
        c = container(d, process)
        if c is None:
            problems.append(f"k8s: no {kind} {name}")
        elif argv(c) != expected:
            problems.append(f"k8s {name}: {argv(c)} is not the Procfile's {expected}")
    return problems


def check_env_vars_are_read_by_the_app(d: Deploy) -> list[str]:
    known = app_env_names() | PROCESS_VARIABLES
    compose, _ = compose_resolved(d)
    used: dict[str, str] = {}
    commands = "\n".join(
        line for line in d.procfile_text.splitlines() if not line.lstrip().startswith("#")
    )
    for name in re.findall(r"\$\{?(\w+)", commands):
        used.setdefault(name, "Procfile")
    for service, spec in app_services(compose).items():
        for name in environment(spec):
            used.setdefault(name, f"compose {service}")
    for name in configmap(d):
        used.setdefault(name, "ConfigMap")
    for name in secret_example(d):
        used.setdefault(name, SECRET_EXAMPLE)
    for doc in workloads(d):
        for c in containers(doc):
            for env in c.get("env") or []:
                used.setdefault(env["name"], f"{doc['metadata']['name']}/{c['name']}")
    return [
        f"{where}: {name} is read by nothing" for name, where in used.items() if name not in known
    ]


def check_env_sources_exist(d: Deploy) -> list[str]:
    configmaps = {m["metadata"]["name"] for m in k8s_find(d, "ConfigMap")}
    secrets = {s["metadata"]["name"] for s in k8s_find(d, "Secret")}
    problems = []
    for doc in workloads(d):
        for c in containers(doc):
            for source in c.get("envFrom") or []:
                if "configMapRef" in source and source["configMapRef"]["name"] not in configmaps:
                    problems.append(f"{c['name']}: no ConfigMap {source['configMapRef']['name']}")
                if "secretRef" in source and source["secretRef"]["name"] not in secrets:
                    problems.append(f"{c['name']}: no Secret {source['secretRef']['name']}")
            if not c.get("envFrom"):
                problems.append(f"{doc['metadata']['name']}/{c['name']} gets no configuration")
    return problems


def check_probes(d: Deploy) -> list[str]:
    problems = []
    allowed = [h.strip() for h in configmap(d).get("DJANGO_ALLOWED_HOSTS", "").split(",")]
    web = container(d, "web")
    if web is None:
        return ["k8s: no web container"]
    ports = {p.get("name"): p["containerPort"] for p in web.get("ports") or []}
    expected = {
        "livenessProbe": core_views.healthz,
        "readinessProbe": core_views.readyz,
        "startupProbe": None,
    }
    for probe_name, view in expected.items():
        probe = web.get(probe_name)
        if probe is None:
            if probe_name != "startupProbe":
                problems.append(f"web has no {probe_name}")
            continue
        http = probe.get("httpGet") or {}
        found = url_view(http.get("path", ""))
        if found is None:
            problems.append(f"web {probe_name}: {http.get('path')} is no route")
        elif view is not None and found is not view:
            problems.append(
                f"web {probe_name}: {http['path']} is {found.__name__}, not {view.__name__}"
            )
        port = http.get("port")
        if port not in ports and port not in ports.values():
            problems.append(f"web {probe_name}: port {port} is not a container port")
        headers = {h["name"].lower(): h["value"] for h in http.get("httpHeaders") or []}
        # Without a Host header the kubelet sends the pod's IP, which Django refuses (400).
        host = headers.get("host", "<pod ip>")
        if not validate_host(host, allowed):
            problems.append(f"web {probe_name}: Host {host} is not in DJANGO_ALLOWED_HOSTS")
    for process in ("worker", "beat"):
        c = container(d, process) or {}
        for probe_name in ("livenessProbe", "startupProbe"):
            command = ((c.get(probe_name) or {}).get("exec") or {}).get("command")
            problems += _heartbeat_probe(f"k8s {process} {probe_name}", command, process)

    compose, _ = compose_resolved(d)
    services = compose["services"]
    for service, spec in services.items():
        if service != "migrate" and not (spec.get("healthcheck") or {}).get("test"):
            problems.append(f"compose {service} has no healthcheck")
    for process in ("worker", "beat"):
        test = (services.get(process, {}).get("healthcheck") or {}).get("test") or []
        problems += _heartbeat_probe(f"compose {process}", test[1:], process)
    web_test = " ".join((services.get("web", {}).get("healthcheck") or {}).get("test") or [])
    urls = re.findall(r"https?://[^'\" ]+", web_test)
    if not urls:
        problems.append("compose web healthcheck requests no URL")
    for url in urls:
        parts = urlparse(url)
        if url_view(parts.path) not in (core_views.healthz, core_views.readyz):
            problems.append(f"compose web healthcheck: {parts.path} is no probe route")
        compose_allowed = environment(services["web"]).get("DJANGO_ALLOWED_HOSTS", "")
        if not validate_host(parts.hostname or "", compose_allowed.split(",")):
            problems.append(f"compose web healthcheck: Host {parts.hostname} is not allowed")
        if str(parts.port) != _daphne_port(services["web"].get("command") or []):
            problems.append(f"compose web healthcheck: port {parts.port} is not daphne's")
    return problems


def _heartbeat_probe(where: str, command: list[str] | None, kind: str) -> list[str]:
    if not command or command[:3] != ["python", "-m", "config.heartbeat"]:
        return [f"{where}: {command} is not `python -m config.heartbeat {kind}`"]
    try:
        options = heartbeat.argument_parser().parse_args(command[3:])
    except SystemExit:
        return [f"{where}: {command[3:]} are not the probe's arguments"]
    return [] if options.kind == kind else [f"{where}: checks {options.kind}, not {kind}"]


def _daphne_port(command: list[str]) -> str:
    return command[command.index("-p") + 1] if "-p" in command else ""


def check_worker_autoscaling(d: Deploy) -> list[str]:
    scaled = k8s_find(d, "ScaledObject")
    if len(scaled) != 1:
        return [f"expected one ScaledObject, found {len(scaled)}"]
    spec = scaled[0]["spec"]
    problems = []
    worker_command = d.procfile["worker"]
    target = spec["scaleTargetRef"]
    targets = k8s_find(d, target.get("kind", "Deployment"), target["name"])
    if not targets or not any(argv(c) == worker_command for c in containers(targets[0])):
        problems.append(f"ScaledObject scales {target['name']}, not the worker Deployment")
    for doc in targets:
        if "replicas" in doc["spec"]:
            problems.append(f"{target['name']} sets replicas, which KEDA owns: apply resets them")
    if int(spec.get("minReplicaCount", 0)) < 1:
        problems.append("minReplicaCount < 1: nobody recovers turns while scaled to zero")

    # Where Celery's messages wait: the broker's database, one list per queue.
    settings = {**configmap(d), **secret_example(d)}
    broker = urlparse(settings.get("CELERY_BROKER_URL") or settings.get("REDIS_URL", ""))
    broker_db = (broker.path or "/0").strip("/") or "0"
    queues = {celery_app.conf.task_default_queue}
    if settings.get("WARDEN_MCP_DISCOVERY_QUEUE"):
        queues.add(settings["WARDEN_MCP_DISCOVERY_QUEUE"])
    watched = set()
    for trigger in spec.get("triggers") or []:
        if trigger.get("type") != "redis":
            continue
        meta = trigger["metadata"]
        watched.add(meta.get("listName"))
        if meta.get("listName") not in queues:
            problems.append(f"KEDA watches list {meta.get('listName')!r}; queues are {queues}")
        if str(meta.get("databaseIndex", "0")) != broker_db:
            problems.append(
                f"KEDA reads Redis db {meta.get('databaseIndex')}, broker is {broker_db}"
            )
        if meta.get("address") != f"{broker.hostname}:{broker.port or 6379}":
            problems.append(f"KEDA reads {meta.get('address')}, the broker is {broker.netloc}")
    if queues - watched:
        problems.append(f"no KEDA trigger watches {sorted(queues - watched)}")
    return problems


def check_images_and_ports(d: Deploy) -> list[str]:
    problems = []
    compose, _ = compose_resolved(d)
    images = set()
    for service, spec in app_services(compose).items():
        images.add(spec.get("image", "").split(":")[0])
        build = spec["build"]
        if not (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile":
            problems.append(f"compose {service} builds {build}, not deploy/Dockerfile")
    for doc in workloads(d):
        for c in containers(doc):
            images.add(c["image"].split(":")[0])
    images |= {i["name"] for i in d.kustomization.get("images") or []}
    if len(images) != 1:
        problems.append(f"one image for every process, found {sorted(images)}")

    web = container(d, "web") or {}
    port = _daphne_port(argv(web))
    container_ports = {str(p["containerPort"]): p.get("name") for p in web.get("ports") or []}
    if port not in container_ports:
        problems.append(f"daphne listens on {port}, the container declares {list(container_ports)}")
    for service in k8s_find(d, "Service"):
        for p in service["spec"]["ports"]:
            if str(p["targetPort"]) not in {port, container_ports.get(port)}:
                problems.append(f"Service {service['metadata']['name']} targets {p['targetPort']}")
    compose_web = compose["services"]["web"]
    if _daphne_port(compose_web.get("command") or []) != port:
        problems.append("compose web listens elsewhere than k8s web")
    published = [str(p).rsplit(":", 1)[-1] for p in compose_web.get("ports") or []]
    if published != [port]:
        problems.append(f"compose web publishes container port {published}, daphne is on {port}")
    exposed = re.findall(r"^\s*EXPOSE\s+(.+)$", d.dockerfile, re.MULTILINE)
    if exposed and port not in " ".join(exposed).replace("/tcp", "").split():
        problems.append(f"deploy/Dockerfile exposes {exposed}, daphne listens on {port}")
    return problems


def check_k8s_schema(d: Deploy) -> list[str]:
    problems = []
    for file, docs in d.k8s.items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                if doc.get("kind") != "ScaledObject":  # a CRD: check_worker_autoscaling
                    problems.append(f"{file}: no schema for {doc.get('kind')}")
            except kubernetes_validate.ValidationError as exc:
                path = "/".join(str(p) for p in exc.path)
                problems.append(f"{file} {doc.get('kind')}: {path}: {exc.message}")
    return problems


def check_kustomization(d: Deploy) -> list[str]:
    listed = set(d.kustomization.get("resources") or [])
    files = set(d.k8s) - {SECRET_EXAMPLE}
    problems = [f"kustomization.yaml lists {r}, which does not exist" for r in listed - set(d.k8s)]
    problems += [f"kustomization.yaml does not list {f}" for f in files - listed]
    if SECRET_EXAMPLE in listed:
        problems.append(f"{SECRET_EXAMPLE} holds placeholders: never part of the build")
    if any(doc.get("metadata", {}).get("namespace") for doc in k8s_docs(d)):
        problems.append("a manifest names its namespace: they must be namespace-agnostic")
    return problems


def check_pod_security(d: Deploy) -> list[str]:
    problems = []
    for doc in workloads(d):
        name, spec = doc["metadata"]["name"], pod_spec(doc)
        pod_nonroot = (spec.get("securityContext") or {}).get("runAsNonRoot")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service account token it never uses")
        writable = {
            m["mountPath"]
            for c in containers(doc)
            for m in c.get("volumeMounts") or []
            if any(v["name"] == m["name"] and "emptyDir" in v for v in spec.get("volumes") or [])
        }
        for c in containers(doc):
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext") or {}
            if not sc.get("runAsNonRoot", pod_nonroot):
                problems.append(f"{where}: may run as root")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allows privilege escalation")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: writable root filesystem")
            elif "/tmp" not in writable:
                problems.append(f"{where}: read-only root without a writable /tmp")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: keeps Linux capabilities")
            resources = c.get("resources") or {}
            for bound in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in (resources.get(bound) or {}):
                        problems.append(f"{where}: no {what} {bound}")
            command = argv(c)
            if "--schedule" in command:
                schedule = command[command.index("--schedule") + 1]
                if not any(schedule.startswith(f"{mount}/") for mount in writable):
                    problems.append(f"{where}: beat's schedule {schedule} is not writable")
    for doc in k8s_find(d, "Deployment", PROCESSES["beat"][2]):
        if doc["spec"].get("replicas") != 1:
            problems.append("beat: exactly one replica, or periodic tasks run twice")
        if (doc["spec"].get("strategy") or {}).get("type") != "Recreate":
            problems.append("beat: a rolling update runs two beats at once; use Recreate")
    return problems


def check_secrets_stay_secret(d: Deploy) -> list[str]:
    problems = [
        f"ConfigMap holds {name}: secrets belong in the Secret"
        for name in configmap(d)
        if SECRET_NAME.search(name)
    ]
    for name, value in secret_example(d).items():
        if re.search(r"SECRET|PASSWORD|TOKEN|_KEYS?$", name) and "CHANGE-ME" not in value:
            problems.append(f"{SECRET_EXAMPLE}: {name} is not a CHANGE-ME placeholder")
        password = urlparse(value).password if "://" in value else None
        if password and "CHANGE-ME" not in password:
            problems.append(f"{SECRET_EXAMPLE}: {name} carries a real-looking password")
    for doc in workloads(d):
        for c in containers(doc):
            for env in c.get("env") or []:
                if SECRET_NAME.search(env["name"]) and "value" in env:
                    problems.append(f"{c['name']}: {env['name']} is a literal in the manifest")
    # compose: secrets only through ${…} from deploy/.env, never literals in the file.
    for service, spec in d.compose["services"].items():
        for name, value in environment(spec).items():
            if not SECRET_NAME.search(name):
                continue
            password = urlparse(value).password if "://" in value else value
            if password and not password.startswith("${"):
                problems.append(f"compose {service}: {name} has a literal secret")
    _, missing = compose_resolved(d)
    problems += missing
    undocumented = compose_variables(d.compose) - set(d.env_example)
    problems += [f"compose reads {name}; .env.example does not mention it" for name in undocumented]
    return problems


def check_compose(d: Deploy) -> list[str]:
    schema = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"compose.yaml: {'/'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(d.compose)
    ]
    compose, _ = compose_resolved(d)
    services = compose["services"]
    if not services.get("postgres", {}).get("image", "").startswith("pgvector/pgvector:"):
        problems.append("compose postgres is not a pgvector image")
    migrate = PROCESSES["release"][0]
    for process in ("web", "worker", "beat"):
        depends = services.get(process, {}).get("depends_on") or {}
        condition = (depends.get(migrate) or {}) if isinstance(depends, dict) else {}
        if condition.get("condition") != "service_completed_successfully":
            problems.append(f"compose {process} may start before migrations finished")
    for service, spec in app_services(compose).items():
        env = environment(spec)
        for name, host_service in (("DATABASE_URL", "postgres"), ("REDIS_URL", "redis")):
            host = urlparse(env.get(name, "")).hostname
            if host not in services or host != host_service:
                problems.append(f"compose {service}: {name} points at {host}, no such service")
        if spec.get("read_only") is not True or "/tmp" not in (spec.get("tmpfs") or []):
            problems.append(f"compose {service}: not read-only with a /tmp tmpfs")
    if (services.get("beat", {}).get("deploy") or {}).get("replicas", 1) != 1:
        problems.append("compose beat: exactly one")
    # A misspelt name in deploy/.env is silently ignored, and the default wins.
    unread = set(d.env_example) - compose_variables(d.compose)
    problems += [f".env.example sets {name}, which compose never reads" for name in unread]
    return problems


CHECKS = [
    check_commands_follow_the_procfile,
    check_env_vars_are_read_by_the_app,
    check_env_sources_exist,
    check_probes,
    check_worker_autoscaling,
    check_images_and_ports,
    check_k8s_schema,
    check_kustomization,
    check_pod_security,
    check_secrets_stay_secret,
    check_compose,
]
