"""Writes for policies, and the decision itself.

    policy = policy_create(tenant=t, name="no-shell", source=REGO, author=Author.of(user))
    policy_update(policy=policy, mode="report_only", author=...)    # a new version
    decision = decision_make(tenant_id=..., agent_slug=..., tool_name=..., input_doc=...)

Every save makes a new immutable `PolicyVersion` (source and settings, author, time) and points
the policy at it. A source is checked by the configured engine before anything is written.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from apps.core.exceptions import InvalidInput
from apps.policies import selectors
from apps.policies.adapters import policy_engine
from apps.policies.defaults import (
    DEFAULT_ENTRY_POINT,
    DEFAULT_POLICY_DESCRIPTION,
    DEFAULT_POLICY_NAME,
    DEFAULT_POLICY_SOURCE,
    SAMPLE_INPUT,
)
from apps.policies.engines.base import (
    EngineError,
    EngineTimeout,
    PolicyCompileError,
    PolicyModule,
)
from apps.policies.engines.decision import Decision, PolicyResult, combine, result_from
from apps.policies.exceptions import (
    PolicyEngineUnavailable,
    PolicyInvalid,
    PolicyNameTaken,
    PolicyTooLarge,
)
from apps.policies.models import Policy, PolicyMode, PolicyVersion
from apps.tenants.models import Tenant

logger = logging.getLogger("warden.policies")

_VERSIONED = ("source", "entry_point", "mode", "agent_slug", "tool_name")
_FIELDS = ("name", "description", *_VERSIONED)


@dataclass(frozen=True)
class Author:
    """Who saves a version: a user (console, OIDC), an API key (its label), or the system."""

    user: User | None = None
    label: str = "system"

    @classmethod
    def of(cls, user: User | None, label: str = "") -> Author:
        return cls(user=user, label=label or (user.get_username() if user else "system"))


SYSTEM = Author()


# --------------------------------------------------------------------------- checking a source


def policy_module(version: PolicyVersion) -> PolicyModule:
    return PolicyModule(source=version.source, entry_point=version.entry_point, key=version.digest)


def policy_source_check(*, source: str, entry_point: str) -> PolicyModule:
    """Refuse a source that is too large or that the engine cannot compile and evaluate."""
    limit = settings.WARDEN_POLICY_MAX_SOURCE_BYTES
    size = len(source.encode())
    if size > limit:
        raise PolicyTooLarge(
            f"The policy source is {size} bytes; at most {limit} are allowed.",
            details={"size_bytes": size, "max_bytes": limit},
        )
    if not source.strip():
        raise PolicyInvalid(
            "The policy source is empty.",
            details={"message": "empty source", "line": 1, "column": 1},
        )
    module = PolicyModule(source=source, entry_point=entry_point)
    engine = policy_engine()
    try:
        engine.check(module, sample_input=SAMPLE_INPUT)
    except PolicyCompileError as exc:
        raise PolicyInvalid(
            f"The policy does not compile: {exc}", details={**exc.as_dict(), "engine": engine.name}
        ) from None
    except EngineTimeout as exc:
        # Compiling, or evaluating a sample input, ran past its limit: the source's doing.
        raise PolicyInvalid(
            f"The policy was stopped while being checked: {exc}",
            details={"message": str(exc), "line": None, "column": None, "engine": engine.name},
        ) from None
    except EngineError as exc:
        raise PolicyEngineUnavailable(
            f"The policy engine could not check the policy ({exc}); nothing was saved."
        ) from None
    return module


# --------------------------------------------------------------------------- writes


def _validate_mode(mode: str) -> None:
    if mode not in PolicyMode.values:
        raise InvalidInput(f"Unknown mode {mode!r}.", code="unknown_mode")


def _new_version(
    policy: Policy, *, source: str, number: int, digest: str, author: Author
) -> PolicyVersion:
    """A snapshot of the policy's settings (already set on `policy`) with `source`."""
    return PolicyVersion.objects.create(
        tenant_id=policy.tenant_id,
        policy=policy,
        number=number,
        source=source,
        entry_point=policy.entry_point,
        mode=policy.mode,
        agent_slug=policy.agent_slug,
        tool_name=policy.tool_name,
        digest=digest,
        author=author.user,
        author_label=author.label[:200],
    )


def policy_create(
    *,
    tenant: Tenant,
    name: str,
    source: str,
    entry_point: str = DEFAULT_ENTRY_POINT,
    mode: str = PolicyMode.ENFORCE,
    agent_slug: str = "",
    tool_name: str = "",
    description: str = "",
    author: Author = SYSTEM,
    check: bool = True,
) -> Policy:
    """A new policy and its version 1. `check=False` only for sources shipped with Warden
    (the default policy, tested once here) — never for a tenant's."""
    _validate_mode(mode)
    module = (
        policy_source_check(source=source, entry_point=entry_point)
        if check
        else PolicyModule(source=source, entry_point=entry_point)
    )
    try:
        with transaction.atomic():
            if Policy.objects.filter(tenant=tenant, name=name).exists():
                raise PolicyNameTaken(f"A policy named {name!r} already exists.")
            policy = Policy.objects.create(
                tenant=tenant,
                name=name,
                description=description,
                mode=mode,
                entry_point=entry_point,
                agent_slug=agent_slug,
                tool_name=tool_name,
            )
            version = _new_version(
                policy, source=source, number=1, digest=module.key, author=author
            )
            policy.current_version = version
            policy.save(update_fields=["current_version", "updated_at"])
    except IntegrityError as exc:  # a concurrent create with the same name
        raise PolicyNameTaken(f"A policy named {name!r} already exists.") from exc
    logger.info("policy created", extra={"policy_id": str(policy.id), "tenant_id": str(tenant.id)})
    return policy


def policy_update(*, policy: Policy, author: Author = SYSTEM, **changes: Any) -> Policy:
    """Save the policy with `changes`: every save is a new version (even one that changes only
    the mode). A changed source or entry point is checked first."""
    unknown = set(changes) - set(_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.", code="unknown_field")
    if "mode" in changes:
        _validate_mode(changes["mode"])
    current = policy.current_version
    source = changes.get("source", current.source if current else "")
    entry_point = changes.get("entry_point", policy.entry_point)
    if current is None or source != current.source or entry_point != current.entry_point:
        module = policy_source_check(source=source, entry_point=entry_point)
    else:
        module = policy_module(current)
    try:
        with transaction.atomic():
            # One writer at a time per policy: version numbers never collide.
            locked = Policy.objects.select_for_update().get(
                id=policy.id, tenant_id=policy.tenant_id
            )
            name = changes.get("name", locked.name)
            if (
                name != locked.name
                and Policy.objects.filter(tenant_id=locked.tenant_id, name=name).exists()
            ):
                raise PolicyNameTaken(f"A policy named {name!r} already exists.")
            for field in _FIELDS:
                if field in changes and field != "source":
                    setattr(locked, field, changes[field])
            last = (
                PolicyVersion.objects.filter(policy=locked)
                .order_by("-number")
                .values_list("number", flat=True)
                .first()
                or 0
            )
            version = _new_version(
                locked, source=source, number=last + 1, digest=module.key, author=author
            )
            locked.current_version = version
            locked.save()
    except IntegrityError as exc:
        raise PolicyNameTaken(f"A policy named {changes.get('name')!r} already exists.") from exc
    logger.info(
        "policy saved",
        extra={"policy_id": str(locked.id), "version": version.number, "mode": locked.mode},
    )
    return locked


def policy_delete(*, policy: Policy) -> None:
    with transaction.atomic():
        Policy.objects.filter(id=policy.id, tenant_id=policy.tenant_id).update(current_version=None)
        PolicyVersion.objects.filter(policy_id=policy.id, tenant_id=policy.tenant_id).delete()
        Policy.objects.filter(id=policy.id, tenant_id=policy.tenant_id).delete()
    logger.info("policy deleted", extra={"policy_id": str(policy.id)})


def policy_default_ensure(*, tenant: Tenant) -> Policy | None:
    """Give `tenant` the shipped default policy unless it has one by that name."""
    if Policy.objects.filter(tenant=tenant, name=DEFAULT_POLICY_NAME).exists():
        return None
    return policy_create(
        tenant=tenant,
        name=DEFAULT_POLICY_NAME,
        description=DEFAULT_POLICY_DESCRIPTION,
        source=DEFAULT_POLICY_SOURCE,
        check=False,  # shipped and tested; no engine round trip in the tenant's creation
    )


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class VersionRun:
    """One version evaluated on one input: its result (a deny when it failed) and why."""

    result: PolicyResult
    error: str | None  # None, "timeout" or "engine_error"
    value: Any
    defined: bool
    engine: str


def version_run(*, version: PolicyVersion, input_doc: Mapping[str, Any], label: str) -> VersionRun:
    """Evaluate one version; never raises: an engine failure is a deny that says so."""
    engine = policy_engine()
    error: str | None = None
    value: Any = None
    defined = False
    try:
        evaluation = engine.evaluate(policy_module(version), input_doc)
        value, defined = evaluation.value, evaluation.defined
        result = result_from(value, defined=defined, label=label)
    except EngineTimeout as exc:
        error = "timeout"
        result = PolicyResult.denied(f"{label}: {exc}: denied (fail closed)")
    except EngineError as exc:
        error = "engine_error"
        result = PolicyResult.denied(
            f"{label}: the policy engine failed ({exc}): denied (fail closed)"
        )
    except Exception as exc:  # a bug must not wave a call through either
        logger.exception("policy evaluation crashed", extra={"policy_version_id": str(version.id)})
        error = "engine_error"
        result = PolicyResult.denied(
            f"{label}: the policy engine failed ({type(exc).__name__}): denied (fail closed)"
        )
    return VersionRun(result=result, error=error, value=value, defined=defined, engine=engine.name)


def _evaluate(
    policy: Policy, version: PolicyVersion, input_doc: Mapping[str, Any]
) -> dict[str, Any]:
    """One policy on one input; never raises: an engine failure is a deny that says so."""
    started = time.perf_counter()
    run = version_run(
        version=version, input_doc=input_doc, label=f"policy {policy.name!r} v{version.number}"
    )
    result, error, value, defined = run.result, run.error, run.value, run.defined
    elapsed_us = round((time.perf_counter() - started) * 1_000_000)
    return {
        "policy_id": str(policy.id),
        "name": policy.name,
        "version": version.number,
        "version_id": str(version.id),
        "digest": version.digest,
        "mode": policy.mode,
        "engine": run.engine,
        "outcome": result.outcome,
        "result": result.as_dict(),
        "error": error,
        "latency_us": elapsed_us,
        "_value": value,
        "_defined": defined,
        "_result": result,
    }


def decision_make(
    *,
    tenant_id: uuid.UUID,
    agent_slug: str,
    tool_name: str,
    input_doc: Mapping[str, Any],
    agent_policies: Sequence[Policy] | None = None,
) -> Decision:
    """Evaluate every applicable policy for one tool call and combine them.

    `agent_policies`: the agent's policies as `selectors.policies_for_agent` read them, for a
    caller deciding many calls under the same policies (a turn); else they are read now."""
    if agent_policies is None:
        applicable: Iterable[Policy] = selectors.policies_applicable(
            tenant_id=tenant_id, agent_slug=agent_slug, tool_name=tool_name
        )
    else:
        applicable = [p for p in agent_policies if selectors.applies_to_tool(p, tool_name)]
    evaluations = [
        _evaluate(policy, policy.current_version, input_doc)
        for policy in applicable
        if policy.current_version is not None
    ]
    enforced = combine(e["_result"] for e in evaluations if e["mode"] == PolicyMode.ENFORCE)
    would_be = combine(e["_result"] for e in evaluations)
    public = [{k: v for k, v in e.items() if not k.startswith("_")} for e in evaluations]
    return Decision(enforced=enforced, would_be=would_be, evaluations=tuple(public))


def decision_in_process(*, tool_name: str, agent_policies: Sequence[Policy]) -> bool:
    """Whether `decision_make` for a call of `tool_name` under `agent_policies` (as
    `selectors.policies_for_agent` read them) stays in this process: every applicable policy is
    evaluated in the calling thread (the shipped default, with the in-process Rego engine), so
    deciding cannot stall on a helper, a server or the database."""
    engine = policy_engine()
    return all(
        engine.evaluates_in_process(policy_module(policy.current_version))
        for policy in agent_policies
        if policy.current_version is not None and selectors.applies_to_tool(policy, tool_name)
    )


def policy_evaluate(*, policy: Policy, input_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The policy's decision for a hand-written input (whatever its mode): its result, the
    outcome, and the raw value its entry point produced."""
    version = policy.current_version
    if version is None:
        raise InvalidInput("The policy has no version yet.", code="policy_unversioned")
    evaluation = _evaluate(policy, version, input_doc)
    public = {k: v for k, v in evaluation.items() if not k.startswith("_")}
    return {**public, "value": evaluation["_value"], "defined": evaluation["_defined"]}
