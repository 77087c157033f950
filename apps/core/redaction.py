"""PII and credential redaction: documented patterns, each confirmed by a validator.

Everything that leaves the platform (stored events, logs, Slack cards, API responses for roles
below admin, span attributes) goes through `redact_text` / `redact_payload`. A match becomes
`[REDACTED:<kind>]`.

Built-in kinds, and what confirms a candidate (a candidate that fails is left as it is, so a
16-digit order number failing Luhn or an IBAN with a bad checksum stays readable):

    email         RFC-5321-shaped address, bounded local part and labels
    phone         +CC international, NANP ((555) 123-4567, 555-123-4567) or 0-trunk national
                  forms; 8-15 digits (E.164's range) in total
    card          13-19 digits, optional space/dash groups, IIN 2-6, Luhn (python-stdnum)
    iban          country code, check digits, BBAN; country length + ISO 7064 mod 97-10 (stdnum)
    national_id   US SSN (stdnum.us.ssn), UK NINO (HMRC prefix rules), DE Steuer-IdNr
                  (stdnum.de.idnr), FR NIR (stdnum.fr.nir), IT codice fiscale
                  (stdnum.it.codicefiscale), ES DNI/NIE (stdnum.es.dni/nie)
    api_key       provider prefixes: sk-, sk-ant-, sk_live_/rk_/pk_, ghp_/gho_/ghu_/ghs_/ghr_,
                  github_pat_, xox?-, xapp-, AKIA/ASIA, AIza, glpat-, hf_, wdn_ (Warden's own)
    bearer_token  `Bearer <token>` (any case)
    jwt           three base64url parts whose header decodes to a JSON object
    private_key   a PEM `-----BEGIN … PRIVATE KEY-----` block (to its END line, or to the end
                  of the base64 when cut short)

Credentials (api_key, bearer_token, jwt, private_key) are always scrubbed; a tenant may turn
PII kinds off and add its own patterns (apps.tenants.RedactionSettings). Tenant patterns run on
the `regex` module with a per-call timeout: a pattern that runs away redacts the whole string
rather than stall the turn or let it through.

This module is pure (no Django): the tenants app registers how a tenant's configuration is
loaded (`set_config_loader`), and compiled redactors are cached per tenant for
`CONFIG_TTL_SECONDS` (a save in this process invalidates at once).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import regex
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.us import ssn

PII_KINDS = ("email", "phone", "card", "iban", "national_id")
CREDENTIAL_KINDS = ("api_key", "bearer_token", "jwt", "private_key")
ALL_KINDS = PII_KINDS + CREDENTIAL_KINDS

# No built-in kind matches fewer characters than this ("a@b.co", the shortest e-mail).
_MIN_BUILTIN_LEN = 6

CUSTOM_PATTERN_MAX_LEN = 300
CUSTOM_PATTERNS_MAX = 20
CUSTOM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Per call of one tenant pattern on one string, in seconds. A timeout redacts the whole string.
CUSTOM_TIMEOUT_SECONDS = 0.005
# How long a tenant's compiled redactor is reused before its configuration is read again.
CONFIG_TTL_SECONDS = 30.0


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# --- validators -----------------------------------------------------------------------------


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _card_valid(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn.is_valid(digits)


def _phone_valid(text: str) -> bool:
    return 8 <= len(_digits(text)) <= 15


def _national_phone_valid(text: str) -> bool:
    return 9 <= len(_digits(text)) <= 12


# HMRC NIM39110: these two-letter prefixes are never allocated.
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def _nino_valid(text: str) -> bool:
    return text.replace(" ", "")[:2].upper() not in _NINO_BAD_PREFIXES


def _iban_valid(text: str) -> bool:
    # ISO 7064 mod 97-10 first (a few µs); stdnum's full check (country length and BBAN
    # format, ~40 µs) only for what passes it.
    compact = text.replace(" ", "")
    digits = "".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])
    return int(digits) % 97 == 1 and std_iban.is_valid(compact)


def _jwt_valid(text: str) -> bool:
    header = text.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict)


# --- the built-in kinds --------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    name: str
    pattern: re.Pattern[str]
    validator: Callable[[str], bool] | None = None
    # Cheap substring tests: when none is in the text, the pattern can't match and isn't run.
    triggers: tuple[str, ...] = ()
    # A candidate that fails validation still claims its span: no other kind reads a part of
    # a near-miss IBAN or card number as, say, a phone number (the whole span may still be
    # another kind: a French NIR is 15 digits that fail Luhn).
    claims: bool = False
    # Needs a run of 6 digits (separators allowed): skipped when `_NUMERIC_GATE` finds none.
    numeric: bool = False


_B = r"(?<![A-Za-z0-9])"  # no letter or digit right before
_E = r"(?![A-Za-z0-9])"  # ... or right after

# Every number-shaped kind (cards, IBANs, phones, national ids but the codice fiscale) matches
# within a run of capitals, digits and `+() ./-`, and holds at least 6 digits with at most 2
# separators between them. One fast scan for such runs, then the 10 number patterns on those
# runs only: most text (and most of a turn's event payloads) has none, or a date or two.
_NUMERIC_RUN = re.compile(r"[A-Z0-9+(][A-Z0-9+() ./-]{6,}")
_NUMERIC_GATE = re.compile(r"\d(?:[ ./()-]{0,2}\d){5}")
# Identifiers in lower-case hex (UUIDs, SHA digests, commit ids) hold digit runs that can pass
# Luhn or a national-id checksum by chance (~0.2 % of UUIDs did): nothing inside one is PII.
_HEX_ID = re.compile(r"(?<![0-9A-Za-z_])[0-9a-f][0-9a-f-]{14,}[0-9a-f](?![0-9A-Za-z_])")
_HEX_LETTER = re.compile(r"[a-f]")

_API_KEY_TRIGGERS = tuple(
    "sk- k_live_ k_test_ ghp_ gho_ ghu_ ghs_ ghr_ github_pat_ xox xapp- AKIA ASIA AIza glpat- hf_ "
    "wdn_".split()
)
_CODICE_FISCALE = (
    # The first letter before the lookbehind: sre then skips ahead to capitals in C.
    r"[A-Z](?<![A-Za-z0-9][\s\S])[A-Z]{5}[0-9LMNPQRSTUV]{2}[A-EHLMPR-T][0-9LMNPQRSTUV]{2}[A-Z]"
    r"[0-9LMNPQRSTUV]{3}[A-Z]" + _E
)

_BUILTIN: tuple[_Kind, ...] = (
    _Kind(
        "private_key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----"
            r"(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s:,.-]*)"
        ),
        triggers=("PRIVATE KEY",),
    ),
    _Kind(
        "bearer_token",
        re.compile(r"(?<![A-Za-z])[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._~+/=-]{8,}"),
        triggers=("earer", "EARER"),
    ),
    _Kind(
        "jwt",
        re.compile(_B + r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        _jwt_valid,
        triggers=("eyJ",),
    ),
    _Kind(
        "api_key",
        re.compile(
            r"(?<![A-Za-z0-9_-])(?:"
            r"sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
            r"|[srp]k_(?:live|test)_[A-Za-z0-9]{16,}"
            r"|gh[pousr]_[A-Za-z0-9]{30,}"
            r"|github_pat_[A-Za-z0-9_]{22,}"
            r"|xox[abposre]-[A-Za-z0-9-]{10,}"
            r"|xapp-[A-Za-z0-9-]{10,}"
            r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
            r"|AIza[0-9A-Za-z_-]{35}"
            r"|glpat-[A-Za-z0-9_-]{20,}"
            r"|hf_[A-Za-z0-9]{30,}"
            r"|wdn_[A-Za-z0-9_-]{16,}"
            r")"
        ),
        triggers=_API_KEY_TRIGGERS,
    ),
    _Kind(
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}" + _E
        ),
        triggers=("@",),
    ),
    _Kind(
        "iban",
        re.compile(_B + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?" + _E),
        _iban_valid,
        claims=True,
        numeric=True,
    ),
    _Kind(
        "card",
        re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])"),
        _card_valid,
        claims=True,
        numeric=True,
    ),
    _Kind(
        "national_id",
        re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"),
        ssn.is_valid,
        numeric=True,
    ),
    _Kind(
        "national_id",
        re.compile(_B + r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]" + _E),
        _nino_valid,
        numeric=True,
    ),
    _Kind(
        "national_id",
        re.compile(r"(?<!\d)\d{2} ?\d{3} ?\d{3} ?\d{3}(?!\d)"),
        idnr.is_valid,
        numeric=True,
    ),
    _Kind(
        "national_id",
        re.compile(r"(?<!\d)[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?!\d)"),
        nir.is_valid,
        numeric=True,
    ),
    _Kind("national_id", re.compile(_CODICE_FISCALE), codicefiscale.is_valid),
    _Kind("national_id", re.compile(_B + r"\d{8}-?[A-Z]" + _E), dni.is_valid, numeric=True),
    _Kind("national_id", re.compile(_B + r"[XYZ]-?\d{7}-?[A-Z]" + _E), nie.is_valid, numeric=True),
    _Kind(
        "phone",
        re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}(?!\d)"),
        _phone_valid,
        triggers=("+",),
        numeric=True,
    ),
    _Kind(
        "phone",
        re.compile(r"(?<![\w.+-])(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])"),
        _phone_valid,
        numeric=True,
    ),
    _Kind(
        "phone",
        re.compile(r"(?<![\w.+/-])0\d{2,4}[ /.-]\d{3,4}[ .-]?\d{3,5}(?![\w-])"),
        _national_phone_valid,
        numeric=True,
    ),
)


# --- configuration -------------------------------------------------------------------------


class InvalidPattern(ValueError):
    """A custom pattern that is refused; `code` is stable for API clients."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CustomPattern:
    name: str
    pattern: str


@dataclass(frozen=True)
class RedactionConfig:
    """What one tenant redacts. Hashable: equal configurations share one compiled redactor."""

    enabled: bool = True
    kinds: frozenset[str] = field(default_factory=lambda: frozenset(ALL_KINDS))
    custom: tuple[CustomPattern, ...] = ()


DEFAULT_CONFIG = RedactionConfig()


# Probes that make a backtracking pattern show itself: long runs of one class, then a
# character that makes the overall match fail at the end.
_PROBES = tuple(
    run * 3000 + tail
    for run in ("a", "1", " ", "a1", "a ", "-", ".", "aA")
    for tail in ("!", "\n", "")
)
_PROBE_TIMEOUT_SECONDS = 0.05


def _nested_quantifier(pattern: str) -> bool:
    """A quantified group whose body is itself quantified, like `(a+)+` or `(\\w*\\s?)*`:
    the classic shape of catastrophic backtracking. A heuristic; the timed probes back it up."""
    stack: list[bool] = []  # per open group: does its body hold a quantifier?
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            stack.append(False)
        elif ch == ")" and stack:
            inner = stack.pop()
            following = pattern[i + 1 : i + 2]
            quantified = following in ("*", "+") or (
                following == "{" and re.match(r"\{\d*,\d*\}|\{\d{2,}\}", pattern[i + 1 :])
            )
            if inner and quantified:
                return True
            if stack and (inner or quantified):
                stack[-1] = True
        elif ch in "*+" or (ch == "{" and re.match(r"\{\d*,?\d*\}", pattern[i:])):
            if stack:
                stack[-1] = True
        i += 1
    return False


# `(?i)` and friends: in one alternation with the tenant's other patterns they would apply to
# all of them. Scoped flags, `(?i:…)`, are fine.
_GLOBAL_FLAGS = re.compile(r"(?<!\\)\(\?[aiLmsuxfVw0-9-]+\)")


def validate_custom_pattern(pattern: str) -> regex.Pattern[str]:
    """The compiled pattern, or `InvalidPattern` saying why it is refused."""
    if not pattern:
        raise InvalidPattern("The pattern is empty.", code="pattern_empty")
    if len(pattern) > CUSTOM_PATTERN_MAX_LEN:
        raise InvalidPattern(
            f"The pattern is longer than {CUSTOM_PATTERN_MAX_LEN} characters.",
            code="pattern_too_long",
        )
    try:
        compiled = regex.compile(pattern, regex.VERSION0)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise InvalidPattern(
            f"Not a valid regular expression: {exc}.", code="pattern_invalid"
        ) from None
    if _nested_quantifier(pattern):
        raise InvalidPattern(
            "The pattern nests quantifiers (like `(a+)+`), which can backtrack catastrophically.",
            code="pattern_catastrophic",
        )
    if compiled.groups:
        raise InvalidPattern(
            "Use non-capturing groups `(?:…)`: capturing groups and backreferences are not "
            "supported.",
            code="pattern_has_groups",
        )
    if _GLOBAL_FLAGS.search(pattern):
        raise InvalidPattern(
            "Global inline flags like `(?i)` are not supported; scope them: `(?i:…)`.",
            code="pattern_global_flags",
        )
    if compiled.search("") is not None:
        raise InvalidPattern(
            "The pattern matches the empty string, so it would match everywhere.",
            code="pattern_matches_empty",
        )
    for probe in _PROBES:
        try:
            for _ in compiled.finditer(probe, timeout=_PROBE_TIMEOUT_SECONDS):
                pass
        except TimeoutError:
            raise InvalidPattern(
                "The pattern takes too long on simple inputs (catastrophic backtracking).",
                code="pattern_catastrophic",
            ) from None
    return compiled


def validate_custom_patterns(items: Iterable[CustomPattern]) -> None:
    names: set[str] = set()
    count = 0
    for item in items:
        count += 1
        if not CUSTOM_NAME.match(item.name):
            raise InvalidPattern(
                f"{item.name!r}: a name is 1-32 lower-case letters, digits or _, from a letter.",
                code="pattern_name_invalid",
            )
        if item.name in ALL_KINDS or item.name in names:
            raise InvalidPattern(f"{item.name!r} is taken.", code="pattern_name_taken")
        names.add(item.name)
        try:
            validate_custom_pattern(item.pattern)
        except InvalidPattern as exc:
            raise InvalidPattern(f"{item.name}: {exc}", code=exc.code) from None
    if count > CUSTOM_PATTERNS_MAX:
        raise InvalidPattern(
            f"At most {CUSTOM_PATTERNS_MAX} custom patterns.", code="too_many_patterns"
        )


# --- the redactor --------------------------------------------------------------------------


@cache
def _any_of(triggers: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(map(re.escape, triggers))) if triggers else None


class Redactor:
    """A compiled configuration: call `text()` or `payload()`."""

    def __init__(self, config: RedactionConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        kinds = (config.kinds | frozenset(CREDENTIAL_KINDS)) if config.enabled else frozenset()
        # Credentials are scrubbed even where a tenant turned redaction off.
        chosen = [k for k in _BUILTIN if k.name in kinds or k.name in CREDENTIAL_KINDS]
        # Each text kind with its triggers as one pattern: one search instead of a test per
        # trigger (an event's payload has dozens of strings, keys included).
        self._text_kinds = tuple((k, _any_of(k.triggers)) for k in chosen if not k.numeric)
        self._numeric_kinds = tuple(k for k in chosen if k.numeric)
        custom = config.custom if config.enabled else ()
        # All of a tenant's patterns in one alternation: one scan (and one timeout, which costs
        # more than a short scan) per string. Patterns have no capturing groups of their own
        # (validate_custom_pattern), so the group that matched names the pattern.
        self._custom_names = {f"c{i}": c.name for i, c in enumerate(custom)}
        self._custom = (
            regex.compile(
                "|".join(f"(?P<c{i}>{c.pattern})" for i, c in enumerate(custom)), regex.VERSION0
            )
            if custom
            else None
        )

    @staticmethod
    def _scan(
        kind: _Kind,
        text: str,
        pos: int,
        endpos: int,
        spans: list[tuple[int, int, str]],
        claimed: list[tuple[int, int]],
    ) -> None:
        for match in kind.pattern.finditer(text, pos, endpos):
            start, end = match.span()
            if kind.validator is None or kind.validator(match.group()):
                if not any(s <= start and end <= e and end - start < e - s for s, e in claimed):
                    spans.append((start, end, kind.name))
            elif kind.claims:
                claimed.append((start, end))

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """What to redact in `text`: disjoint `(start, end, kind)`, in order."""
        spans: list[tuple[int, int, str]] = []
        claimed: list[tuple[int, int]] = []
        if len(text) >= _MIN_BUILTIN_LEN:
            for kind, triggers in self._text_kinds:
                if triggers is not None and triggers.search(text) is None:
                    continue
                self._scan(kind, text, 0, len(text), spans, claimed)
            if self._numeric_kinds:
                hex_checked = False
                for run in _NUMERIC_RUN.finditer(text):
                    start, end = run.span()
                    if _NUMERIC_GATE.search(text, start, end) is None:
                        continue
                    if not hex_checked:
                        hex_checked = True
                        claimed.extend(
                            m.span() for m in _HEX_ID.finditer(text) if _HEX_LETTER.search(m[0])
                        )
                    # One character more, so the patterns' look-aheads see what follows.
                    end = min(end + 1, len(text))
                    for kind in self._numeric_kinds:
                        self._scan(kind, text, start, end, spans, claimed)
        if self._custom is not None:
            try:
                for match in self._custom.finditer(text, timeout=CUSTOM_TIMEOUT_SECONDS):
                    if match.end() > match.start():
                        name = self._custom_names[match.lastgroup or ""]
                        spans.append((match.start(), match.end(), name))
            except TimeoutError:
                # Fail closed: a string we could not finish scanning is not let through.
                return [(0, len(text), "custom")]
        if len(spans) < 2:
            return spans
        spans.sort(key=lambda s: (s[0], -s[1]))
        merged = [spans[0]]
        for start, end, name in spans[1:]:
            last_start, last_end, last_name = merged[-1]
            if start < last_end:  # overlaps what is already redacted: widen it
                merged[-1] = (last_start, max(end, last_end), last_name)
            else:
                merged.append((start, end, name))
        return merged

    def text(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        return _apply(text, spans, 0, len(text))

    def payload(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string (keys included) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                (self.text(k) if isinstance(k, str) else k): self.payload(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.payload(v) for v in value]
        return value


def _apply(text: str, spans: list[tuple[int, int, str]], begin: int, end: int) -> str:
    """`text[begin:end]` with the parts under `spans` replaced by markers."""
    out: list[str] = []
    pos = begin
    for start, stop, name in spans:
        if stop <= begin or start >= end:
            continue
        out.append(text[pos : max(start, begin)])
        out.append(marker(name))
        pos = min(stop, end)
    out.append(text[pos:end])
    return "".join(out)


class StreamRedactor:
    """Redacts a text that arrives in pieces (a model's token deltas), so what is published
    piece by piece never holds what the whole text would have had redacted.

    `feed` returns what may go out now; `flush` the rest at the end. It holds back the last
    `hold` characters, never cuts inside a run of non-space characters (an e-mail, a key or a
    JWT is one run however long it grows), and never inside a match (a phone number or an IBAN
    written with spaces, a PEM block). The last `context` characters already sent stay in view
    so a match that began there (`Bearer` sent, its token not yet) is still redacted.
    """

    # 64: more than the longest match that spans spaces (an IBAN written in groups is at most
    # 42 characters); longer matches are single runs or PEM blocks, held whole anyway.
    def __init__(self, redactor: Redactor, *, hold: int = 64, context: int = 32) -> None:
        self.redactor = redactor
        self.hold, self.context = hold, context
        self._text = ""  # raw: some already sent (the context), then what is held
        self._sent = 0  # how much of `_text` has gone out

    def feed(self, delta: str) -> str:
        self._text += delta
        if len(self._text) - self._sent <= self.hold:
            return ""
        cut = len(self._text) - self.hold
        while cut > self._sent and not self._text[cut - 1].isspace():
            cut -= 1
        spans = self.redactor.spans(self._text)
        moved = True
        while moved:
            moved = False
            for start, end, _ in spans:
                if start < cut < end:
                    cut, moved = start, True
        if cut <= self._sent:
            return ""
        out = _apply(self._text, spans, self._sent, cut)
        keep = max(0, cut - self.context)
        self._text, self._sent = self._text[keep:], cut - keep
        return out

    def flush(self) -> str:
        out = _apply(self._text, self.redactor.spans(self._text), self._sent, len(self._text))
        self._text, self._sent = "", 0
        return out


@lru_cache(maxsize=256)
def compiled(config: RedactionConfig) -> Redactor:
    return Redactor(config)


DEFAULT = compiled(DEFAULT_CONFIG)

ConfigLoader = Callable[[str], RedactionConfig]
_loader: ConfigLoader | None = None
_cache: dict[str, tuple[float, Redactor]] = {}
_cache_lock = threading.Lock()


def set_config_loader(loader: ConfigLoader | None) -> None:
    """Register how a tenant's configuration is read (the tenants app does, at startup)."""
    global _loader
    _loader = loader
    invalidate()


def invalidate(tenant_id: object | None = None) -> None:
    with _cache_lock:
        if tenant_id is None:
            _cache.clear()
        else:
            _cache.pop(str(tenant_id), None)


def redactor_for(tenant_id: object | None) -> Redactor:
    """The tenant's compiled redactor (the platform default without a tenant or a loader)."""
    if tenant_id is None or _loader is None:
        return DEFAULT
    key = str(tenant_id)
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    try:
        redactor = compiled(_loader(key))
    except Exception:
        # Configuration unreadable (database down): the strictest built-ins, retried soon.
        with _cache_lock:
            _cache[key] = (now + 1.0, DEFAULT)
        return DEFAULT
    with _cache_lock:
        _cache[key] = (now + CONFIG_TTL_SECONDS, redactor)
    return redactor


def redact_text(text: str, tenant_id: object | None = None) -> str:
    """`text` with every PII and credential match replaced by `[REDACTED:<kind>]`.

    For span attributes, log lines and anything else leaving the platform as text."""
    return redactor_for(tenant_id).text(text)


def redact_payload(value: Any, tenant_id: object | None = None) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with every string redacted."""
    return redactor_for(tenant_id).payload(value)
