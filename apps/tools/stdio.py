"""stdio MCP servers: the operator's templates, the tenant's parameters, and how a server starts.

A stdio server is a process on the platform's workers, so no tenant input may choose what runs.
The platform operator defines templates (`WARDEN_MCP_STDIO_TEMPLATES`); a tenant's server names
one and fills in only the arguments and environment variables that template declares:

    "git": {
        "description": "Git on a repository in the tenant's workspace",
        "command": ["{python}", "-I", "-m", "mcp_server_git"],        # fixed argv
        "args": {"--repository": {"type": "workspace_path", "required": True,
                                  "must_contain": ".git"}},
        "env": {"GIT_TOKEN": {"type": "secret"}},
    }

- `command`: the fixed argv; the tokens `{python}` (the worker's interpreter) and `{workspace}`
  (the tenant's workspace directory) are substituted.
- `args`: tenant-settable arguments, rendered after the command in the template's order. A name
  starting with `-` is an option (`--name value`); any other name is a positional value.
- `env`: tenant-settable environment variables. Interpreter, loader and shell variables
  (`forbidden_env_name`) can never be declared: a template that does is refused when templates
  are loaded (every use, and `manage.py check`).
- Validators (`type`): `regex` (`pattern`, matched in full), `choices` (`choices`),
  `workspace_path` (resolved, symlinks and `..` included, it must lie inside the tenant's
  workspace; `must_contain` names an entry, e.g. `.git`, that must be a real directory in it),
  `secret` (env only: filled from the server's auth secret or per-call credential, through
  `auth_env` / `credential_env`). Every parameter may say `required` and `description`.

A tenant's value never starts with `-` (it would read as an option) and never holds a NUL.

The process gets a minimal environment: a fixed PATH, HOME = the tenant's workspace (also its
working directory, created 0700 on demand), LANG, plus the validated tenant variables and the
secret ones. Nothing of the platform's own environment (database URLs, keys) reaches it.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from django.conf import settings

from apps.tools.exceptions import McpServerInvalid, StdioTemplatesInvalid

ParamKind = Literal["regex", "choices", "workspace_path", "secret"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_ARG_NAME = re.compile(r"^-{0,2}[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Path values: no shell or tilde expansion characters (GitPython expands `$VAR` in paths).
_PATH_CHARS = re.compile(r"^[\w./ +@,=-]+$")
_MAX_VALUE = 1000
_PARAM_KEYS = {"type", "pattern", "choices", "must_contain", "required", "description"}
_TEMPLATE_KEYS = {"description", "command", "args", "env"}

# Environment variables that make an interpreter, the dynamic loader, a shell or a tool the
# server runs (git, ssh, pagers, editors…) execute or load code, or redirect its trust or its
# network. Compared in upper case. A template may never let a tenant set one.
_FORBIDDEN_ENV_EXACT = frozenset(
    {
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS1",
        "PS2",
        "PS4",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        "PROMPT_COMMAND",
        "PATH",
        "HOME",
        "PWD",
        "OLDPWD",
        "SHELL",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "LOCPATH",
        "NLSPATH",
        "GCONV_PATH",
        "HOSTALIASES",
        "RES_OPTIONS",
        "LOCALDOMAIN",
        "TMPDIR",
        "TZDIR",
        "TERMINFO",
        "TERMINFO_DIRS",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "MANPAGER",
        "BROWSER",
        "LESSOPEN",
        "LESSCLOSE",
        "CLASSPATH",
        "ZDOTDIR",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "PHPRC",
        "EMACSLOADPATH",
        "VIMINIT",
        "EXINIT",
        "INPUTRC",
        "HISTFILE",
    }
)
_FORBIDDEN_ENV_PREFIXES = (
    "PYTHON",
    "LD_",
    "DYLD_",
    "BASH",
    "PERL",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "NODE_",
    "NPM_",
    "JAVA",
    "_JAVA",
    "JDK_",
    "GIT_",
    "MALLOC",
    "GLIBC_",
    "GCONV",
    "LC_",
    "XDG_",
    "SSL_",
    "OPENSSL_",
    "SSH_",
    "KRB5",
    "LUA_",
    "TCL",
    "PIP_",
    "UV_",
    "CONDA_",
    "VIRTUAL_ENV",
    "DOTNET_",
    "COMPLUS_",
    "CORECLR_",
    "WARDEN_",
    "DJANGO_",
)
_FORBIDDEN_ENV_SUFFIXES = ("_PROXY", "ASKPASS", "_OPTIONS")


def forbidden_env_name(name: str) -> bool:
    """True for a variable no template may let a tenant set (see _FORBIDDEN_ENV_*)."""
    upper = name.upper()
    return (
        upper in _FORBIDDEN_ENV_EXACT
        or upper.startswith(_FORBIDDEN_ENV_PREFIXES)
        or upper.endswith(_FORBIDDEN_ENV_SUFFIXES)
    )


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Param:
    """One argument or environment variable a template lets a tenant set, and its validator."""

    name: str
    kind: ParamKind
    pattern: re.Pattern[str] | None = None
    choices: tuple[str, ...] = ()
    must_contain: str = ""
    required: bool = False
    description: str = ""

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"type": self.kind, "required": self.required}
        if self.pattern is not None:
            described["pattern"] = self.pattern.pattern
        if self.choices:
            described["choices"] = list(self.choices)
        if self.must_contain:
            described["must_contain"] = self.must_contain
        if self.description:
            described["description"] = self.description
        return described


@dataclass(frozen=True)
class StdioTemplate:
    """A stdio server the platform operator allows tenants to run."""

    name: str
    command: tuple[str, ...]
    description: str = ""
    args: dict[str, Param] = field(default_factory=dict)
    env: dict[str, Param] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "args": {name: p.describe() for name, p in self.args.items()},
            "env": {name: p.describe() for name, p in self.env.items()},
        }


def _param(where: str, name: str, raw: Any, *, is_env: bool) -> Param:
    if not isinstance(raw, Mapping):
        raise StdioTemplatesInvalid(f"{where}: must be an object with a `type`.")
    unknown = set(raw) - _PARAM_KEYS
    if unknown:
        raise StdioTemplatesInvalid(f"{where}: unknown keys {sorted(unknown)}.")
    kind = raw.get("type")
    kinds: tuple[str, ...] = ("regex", "choices", "workspace_path")
    if is_env:
        kinds = (*kinds, "secret")
    if kind not in kinds:
        raise StdioTemplatesInvalid(f"{where}: type must be one of {', '.join(kinds)}.")
    pattern = None
    if kind == "regex":
        try:
            pattern = re.compile(str(raw.get("pattern", "")))
        except re.error as exc:
            raise StdioTemplatesInvalid(f"{where}: pattern does not compile: {exc}") from None
        if not pattern.pattern:
            raise StdioTemplatesInvalid(f"{where}: a regex parameter needs a pattern.")
    choices: tuple[str, ...] = ()
    if kind == "choices":
        raw_choices = raw.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise StdioTemplatesInvalid(f"{where}: choices must be a non-empty list.")
        choices = tuple(str(c) for c in raw_choices)
    must_contain = str(raw.get("must_contain") or "")
    if must_contain and (kind != "workspace_path" or "/" in must_contain or ".." in must_contain):
        raise StdioTemplatesInvalid(f"{where}: must_contain is one entry of a workspace_path.")
    return Param(
        name=name,
        kind=kind,
        pattern=pattern,
        choices=choices,
        must_contain=must_contain,
        required=bool(raw.get("required", False)),
        description=str(raw.get("description") or ""),
    )


def _template(name: str, raw: Any) -> StdioTemplate:
    where = f"stdio template {name!r}"
    if not _NAME.match(name):
        raise StdioTemplatesInvalid(f"{where}: a name is a lower-case slug.")
    if not isinstance(raw, Mapping):
        raise StdioTemplatesInvalid(f"{where}: must be an object.")
    unknown = set(raw) - _TEMPLATE_KEYS
    if unknown:
        raise StdioTemplatesInvalid(f"{where}: unknown keys {sorted(unknown)}.")
    command = raw.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(t, str) and t and "\0" not in t for t in command)
    ):
        raise StdioTemplatesInvalid(f"{where}: command must be a non-empty list of strings.")
    args: dict[str, Param] = {}
    for arg_name, spec in (raw.get("args") or {}).items():
        if not isinstance(arg_name, str) or not _ARG_NAME.match(arg_name):
            raise StdioTemplatesInvalid(f"{where}: argument name {arg_name!r} is not valid.")
        param = _param(f"{where}, argument {arg_name}", arg_name, spec, is_env=False)
        args[arg_name] = param
    env: dict[str, Param] = {}
    for env_name, spec in (raw.get("env") or {}).items():
        if not isinstance(env_name, str) or not _ENV_NAME.match(env_name):
            raise StdioTemplatesInvalid(f"{where}: {env_name!r} is not an environment name.")
        if forbidden_env_name(env_name):
            raise StdioTemplatesInvalid(
                f"{where}: {env_name} is an interpreter, loader or shell variable; "
                "no template may let a tenant set it."
            )
        env[env_name] = _param(f"{where}, env {env_name}", env_name, spec, is_env=True)
    return StdioTemplate(
        name=name,
        command=tuple(command),
        description=str(raw.get("description") or ""),
        args=args,
        env=env,
    )


def templates_load(raw: Any) -> dict[str, StdioTemplate]:
    """Parse and check a templates setting; StdioTemplatesInvalid names the first problem."""
    if not isinstance(raw, Mapping):
        raise StdioTemplatesInvalid("WARDEN_MCP_STDIO_TEMPLATES must map names to templates.")
    return {str(name): _template(str(name), spec) for name, spec in raw.items()}


def stdio_templates() -> dict[str, StdioTemplate]:
    """The configured templates, checked (again) on every use: settings may change in tests,
    and a bad template must be refused wherever it would be used."""
    return templates_load(settings.WARDEN_MCP_STDIO_TEMPLATES)


def stdio_template_get(name: str) -> StdioTemplate:
    template = stdio_templates().get(name)
    if template is None:
        raise McpServerInvalid(
            f"No stdio server template {name!r}; ask the platform operator for one.",
            code="template_unknown",
        )
    return template


# --------------------------------------------------------------------------- workspaces


def workspace_root() -> Path:
    return Path(settings.WARDEN_TOOL_WORKSPACE_ROOT).resolve()


def tenant_workspace(tenant_id: uuid.UUID | str, *, create: bool = False) -> Path:
    """The tenant's own directory for stdio servers (their HOME and working directory)."""
    path = workspace_root() / str(uuid.UUID(str(tenant_id)))
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is masked by the umask, and an existing directory keeps its mode.
        path.chmod(0o700)
    return path


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_workspace_path(param: Param, value: str, workspace: Path, label: str) -> str:
    if not _PATH_CHARS.match(value):
        raise McpServerInvalid(
            f"{label} may hold only letters, digits, spaces and . / _ - + @ , =",
            code="argument_invalid",
        )
    # realpath resolves every symlink and `..` (of parts that exist) before the check.
    real_workspace = Path(os.path.realpath(workspace))
    resolved = Path(os.path.realpath(workspace / value))
    if not _inside(resolved, real_workspace):
        raise McpServerInvalid(
            f"{label} must be a path inside the tenant's workspace directory.",
            code="argument_invalid",
        )
    if param.must_contain:
        entry = resolved / param.must_contain
        if entry.is_symlink() or not entry.is_dir():
            raise McpServerInvalid(
                f"{label} must be a directory of the workspace that holds {param.must_contain}.",
                code="argument_invalid",
            )
    return str(resolved)


def _check_value(param: Param, value: Any, workspace: Path, label: str, code: str) -> str:
    if not isinstance(value, str) or "\0" in value or len(value) > _MAX_VALUE:
        raise McpServerInvalid(f"{label} must be a string of at most {_MAX_VALUE} characters.")
    if value.startswith("-"):
        raise McpServerInvalid(f"{label} must not start with '-'.", code=code)
    if param.kind == "regex":
        assert param.pattern is not None
        if not param.pattern.fullmatch(value):
            raise McpServerInvalid(f"{label} must match {param.pattern.pattern}.", code=code)
        return value
    if param.kind == "choices":
        if value not in param.choices:
            raise McpServerInvalid(f"{label} must be one of {', '.join(param.choices)}.", code=code)
        return value
    if param.kind == "workspace_path":
        try:
            return _check_workspace_path(param, value, workspace, label)
        except McpServerInvalid as exc:
            raise McpServerInvalid(exc.message, code=code) from None
    raise McpServerInvalid(f"{label} is set from the auth secret (auth_env), not env.", code=code)


@dataclass(frozen=True)
class StdioLaunch:
    """What a worker starts for one server: argv, the complete environment, the directory."""

    command: str
    args: tuple[str, ...]
    env: dict[str, str]
    cwd: str


def stdio_parameters_check(
    *,
    tenant_id: uuid.UUID | str,
    template: str,
    args: Any,
    env: Any,
    auth_env: str = "",
    credential_env: str = "",
) -> tuple[StdioTemplate, list[str], dict[str, str]]:
    """Check a server's parameters against its template; returns the rendered arguments (in
    the template's order, workspace paths resolved) and the tenant's environment."""
    tmpl = stdio_template_get(template)
    if not isinstance(args, Mapping):
        raise McpServerInvalid("args must map the template's argument names to values.")
    if not isinstance(env, Mapping):
        raise McpServerInvalid("env must map the template's variable names to values.")
    workspace = tenant_workspace(tenant_id)
    for name in args:
        if name not in tmpl.args:
            allowed = ", ".join(tmpl.args) or "none"
            raise McpServerInvalid(
                f"Template {tmpl.name!r} takes no argument {name!r} (allowed: {allowed}).",
                code="argument_not_allowed",
            )
    for name in env:
        if name not in tmpl.env:
            allowed = ", ".join(tmpl.env) or "none"
            raise McpServerInvalid(
                f"Template {tmpl.name!r} lets a server set no variable {name!r} "
                f"(allowed: {allowed}).",
                code="env_not_allowed",
            )
    for label, name in (("auth_env", auth_env), ("credential_env", credential_env)):
        if name and (name not in tmpl.env or tmpl.env[name].kind != "secret"):
            raise McpServerInvalid(
                f"{label} {name!r} is not a secret variable of template {tmpl.name!r}.",
                code="env_not_allowed",
            )
    rendered: list[str] = []
    for name, param in tmpl.args.items():
        if name not in args:
            if param.required:
                raise McpServerInvalid(
                    f"Template {tmpl.name!r} needs the argument {name!r}.", code="argument_missing"
                )
            continue
        value = _check_value(param, args[name], workspace, f"argument {name}", "argument_invalid")
        rendered.extend([name, value] if name.startswith("-") else [value])
    tenant_env: dict[str, str] = {}
    for name, param in tmpl.env.items():
        if name in env:
            tenant_env[name] = _check_value(param, env[name], workspace, name, "env_invalid")
        elif param.required and param.kind != "secret":
            raise McpServerInvalid(
                f"Template {tmpl.name!r} needs the variable {name!r}.", code="env_missing"
            )
    return tmpl, rendered, tenant_env


def base_environment(workspace: Path) -> dict[str, str]:
    """The fixed part of every stdio server's environment (nothing inherited)."""
    interpreter_bin = os.path.dirname(sys.executable)
    return {
        "PATH": f"{interpreter_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
    }


def stdio_launch(
    *,
    tenant_id: uuid.UUID | str,
    template: str,
    args: Any,
    env: Any,
    secrets: Mapping[str, str],
    auth_env: str = "",
    credential_env: str = "",
) -> StdioLaunch:
    """Everything a worker needs to start the server, checked again now (a template or a
    workspace may have changed since the server was saved). `secrets` maps secret variables
    (auth_env) to values; the per-call credential is added by the executor."""
    tmpl, rendered, tenant_env = stdio_parameters_check(
        tenant_id=tenant_id,
        template=template,
        args=args,
        env=env,
        auth_env=auth_env,
        credential_env=credential_env,
    )
    workspace = tenant_workspace(tenant_id, create=True)
    placeholders = {"{python}": sys.executable, "{workspace}": str(workspace)}
    command = [placeholders.get(part, part) for part in tmpl.command]
    for name in secrets:
        if name not in tmpl.env or tmpl.env[name].kind != "secret":
            raise McpServerInvalid(f"{name} is not a secret variable of {tmpl.name!r}.")
    return StdioLaunch(
        command=command[0],
        args=(*command[1:], *rendered),
        env={**tenant_env, **secrets, **base_environment(workspace)},
        cwd=str(workspace),
    )
