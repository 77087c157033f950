"""`{% sso_enabled as sso %}`: whether "Sign in with SSO" applies (used by the admin login)."""

from __future__ import annotations

from django import template

from apps.chat.sso import sso_enabled as _sso_enabled

register = template.Library()


@register.simple_tag
def sso_enabled() -> bool:
    return _sso_enabled()
