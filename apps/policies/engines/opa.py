"""An OPA server as the policy engine, through opa-python-client (when OPA_URL is set).

Policies are pushed with OPA's policy API (`PUT /v1/policies/<id>`) and evaluated with its data
API (`POST /v1/data/<path>` with `{"input": …}`). OPA keeps every module in one data tree, so
each version is pushed into a package of its own — `package warden_<digest>.<its package>` —
and its references to `data.<its package>` follow it; the line count never changes, so OPA's
error positions are the source's. A version is pushed once per process (and again if the
server lost it: an undefined answer for a policy OPA no longer has triggers one re-push).

Fail closed: the client's timeout bounds every request (a policy that runs too long on the
server is cut off here), no retries (a decision waits at most one timeout), and any error —
connection refused, a 500 from an evaluation error — is an `EngineError`.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient
from opa_client.errors import PolicyNotFoundError, RegoParseError

from .base import (
    EngineError,
    EngineTimeout,
    Evaluation,
    PolicyCompileError,
    PolicyModule,
    check_entry_point,
)

_PACKAGE_LINE = re.compile(r"^([ \t]*package[ \t]+)([A-Za-z_][\w.]*)", re.M)


def namespaced(module: PolicyModule, namespace: str = "") -> tuple[str, str]:
    """The module's source moved into its own package, and its entry point's data path."""
    package = module.package
    namespace = namespace or f"warden_{module.key[:24]}"
    source = _PACKAGE_LINE.sub(lambda m: f"{m.group(1)}{namespace}.{m.group(2)}", module.source, 1)
    source = re.sub(rf"\bdata\.{re.escape(package)}\b", f"data.{namespace}.{package}", source)
    path = "/".join([namespace, *module.rule_path])
    return source, path


class OpaEngine:
    name = "opa"

    def __init__(self, url: str, *, timeout_s: float = 1.0, token: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OPA_URL must be an http(s) URL, not {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout_s = timeout_s
        self.client = OpaClient(
            host=parts.hostname,
            port=port,
            ssl=parts.scheme == "https",
            token=token or None,
            retries=0,
            timeout=timeout_s,
        )
        self._pushed: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the interface

    def check(self, module: PolicyModule, *, sample_input: Mapping[str, Any]) -> None:
        check_entry_point(module)
        trial = uuid.uuid4().hex
        policy_id = f"warden-check-{trial}"
        # A namespace of its own too: the same source may already be pushed for evaluation,
        # and OPA refuses two modules defining the same rule in one package.
        source, path = namespaced(module, f"warden_check_{trial}")
        try:
            self._put(policy_id, source)
            try:
                self._query(path, sample_input)
            except EngineTimeout:
                raise
            except EngineError as exc:
                raise PolicyCompileError(str(exc)) from None
        finally:
            try:
                self.client.delete_policy(policy_id)
            except Exception:  # noqa: S110 - nothing to clean up if it was never stored
                pass

    def evaluates_in_process(self, module: PolicyModule) -> bool:
        return False  # every evaluation is a request to the OPA server

    def evaluate(self, module: PolicyModule, input_doc: Mapping[str, Any]) -> Evaluation:
        source, path = namespaced(module)
        policy_id = f"warden-{module.key}"
        if module.key not in self._pushed:
            self._push(policy_id, source, module.key)
        result = self._query(path, input_doc)
        if "result" not in result and self._lost(policy_id):
            self._push(policy_id, source, module.key)
            result = self._query(path, input_doc)
        return Evaluation(value=result.get("result"), defined="result" in result, engine=self.name)

    def close(self) -> None:
        self.client.close_connection()

    # ------------------------------------------------------------------ requests

    def _push(self, policy_id: str, source: str, key: str) -> None:
        try:
            self._put(policy_id, source)
        except PolicyCompileError as exc:
            raise EngineError(f"OPA refused the policy: {exc}") from None
        with self._lock:
            self._pushed.add(key)

    def _put(self, policy_id: str, source: str) -> None:
        try:
            self.client.update_policy_from_string(source, policy_id, rego_compat=False)
        except RegoParseError as exc:
            first = exc.errors[0] if exc.errors else {}
            location = first.get("location") or {}
            raise PolicyCompileError(
                str(first.get("message") or exc.message or "the policy does not compile"),
                line=location.get("row"),
                column=location.get("col"),
            ) from None
        except requests.Timeout as exc:
            raise EngineTimeout(f"OPA did not answer within {self.timeout_s:g}s") from exc
        except (requests.RequestException, ValueError) as exc:
            raise EngineError(f"OPA is unreachable or failed ({type(exc).__name__})") from exc

    def _query(self, path: str, input_doc: Mapping[str, Any]) -> dict[str, Any]:
        try:
            answer = self.client.query_rule(dict(input_doc), path)
        except requests.Timeout as exc:
            raise EngineTimeout(
                f"OPA did not answer within {self.timeout_s:g}s; the evaluation was abandoned"
            ) from exc
        except requests.HTTPError as exc:
            raise EngineError(_opa_message(exc.response)) from exc
        except (requests.RequestException, ValueError) as exc:
            raise EngineError(f"OPA is unreachable or failed ({type(exc).__name__})") from exc
        if not isinstance(answer, dict):
            raise EngineError("OPA answered something other than a JSON object")
        return answer

    def _lost(self, policy_id: str) -> bool:
        try:
            self.client.get_policy(policy_id)
        except PolicyNotFoundError:
            return True
        except (requests.RequestException, ValueError):
            return False
        return False


def _opa_message(response: requests.Response | None) -> str:
    if response is None:
        return "OPA failed"
    try:
        body = response.json()
        errors = body.get("errors") or []
        detail = errors[0].get("message") if errors else ""
        return f"OPA {response.status_code}: {body.get('message', '')} {detail}".strip()
    except ValueError:
        return f"OPA {response.status_code}"
