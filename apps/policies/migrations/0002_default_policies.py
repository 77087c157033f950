"""Existing tenants get the shipped default policy (new tenants get it when created).

The source is frozen here as it shipped, so this migration means the same thing whenever it
runs; later editions of apps/policies/defaults.py reach new tenants only.
"""

import hashlib

from django.db import migrations

NAME = "default"
ENTRY_POINT = "data.warden.decision"
DESCRIPTION = 'Shipped with Warden: critical tools are denied, high-risk tools need approval, in prod medium-risk tools too, low-risk tools run; nothing runs once the session budget is spent.'
SOURCE = '# Warden\'s default policy. Edit it freely: every save is a new version.\npackage warden\n\nimport rego.v1\n\ndecision := deny("the session\'s token budget is spent") if {\n\tinput.budget.tokens_used >= input.budget.tokens_limit\n} else := deny(sprintf("tool %s is critical risk", [input.tool.name])) if {\n\tinput.tool.risk_tier == "critical"\n} else := approval(sprintf("tool %s is high risk", [input.tool.name])) if {\n\tinput.tool.risk_tier == "high"\n} else := approval(sprintf("tool %s is medium risk and this is prod", [input.tool.name])) if {\n\tinput.tool.risk_tier == "medium"\n\tinput.environment == "prod"\n} else := allowed if {\n\tinput.tool.risk_tier in {"low", "medium"}\n} else := deny(sprintf("tool %s has an unknown risk tier", [input.tool.name]))\n\ndeny(reason) := {"allow": false, "require_approval": false, "reasons": [reason], "obligations": []}\n\napproval(reason) := {\n\t"allow": true, "require_approval": true, "reasons": [reason], "obligations": [],\n}\n\nallowed := {"allow": true, "require_approval": false, "reasons": [], "obligations": []}\n'


def add_default_policies(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    Policy = apps.get_model("policies", "Policy")
    PolicyVersion = apps.get_model("policies", "PolicyVersion")
    digest = hashlib.sha256(f"{ENTRY_POINT}\0{SOURCE}".encode()).hexdigest()
    for tenant in Tenant.objects.all():
        if Policy.objects.filter(tenant=tenant, name=NAME).exists():
            continue
        policy = Policy.objects.create(
            tenant=tenant, name=NAME, description=DESCRIPTION, mode="enforce", entry_point=ENTRY_POINT
        )
        version = PolicyVersion.objects.create(
            tenant=tenant,
            policy=policy,
            number=1,
            source=SOURCE,
            entry_point=ENTRY_POINT,
            mode="enforce",
            digest=digest,
            author_label="system (migration)",
        )
        policy.current_version = version
        policy.save(update_fields=["current_version"])


class Migration(migrations.Migration):
    dependencies = [
        ("policies", "0001_initial"),
        ("tenants", "0002_invitations_apikey_hash_index"),
    ]

    operations = [migrations.RunPython(add_default_policies, migrations.RunPython.noop)]
