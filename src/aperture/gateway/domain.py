"""The inference gateway's rules: keys, who may call what, limits, prices, safety policies, alerts.

Pure rules and data: no I/O, no clock of its own. The gateway serves models through an
OpenAI-compatible API (`/v1`); the words here are the institution's: an **organisation** holds
**gateway keys**; a model version is **bound** to a **backend** (the embedded engine or a remote
OpenAI-compatible server); **limits** apply per key and per organisation; **usage** is metered
per key, organisation, model and day and **priced** from the model's price table; a **safety
policy** checks input and output; repeated **blocks** raise an **alert** for the risk desk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from aperture.access.domain import hash_secret
from aperture.core.errors import InvalidInput
from aperture.release.domain import Tier, controls

# --- gateway keys ---------------------------------------------------------------------------

KEY_PREFIX = "gwk"
# `gwk_<8 lowercase hex lookup id>_<43 chars of base64url secret>`: 256 bits of secret.
KEY_PATTERN = re.compile(r"^gwk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """An organisation's key for the gateway. Only its SHA-256 is stored (see access.domain.hash_secret)."""

    key_id: str
    name: str
    organisation: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


def parse_key(text: str) -> str | None:
    """The lookup id of a well-formed gateway key, or None."""
    match = KEY_PATTERN.match(text.strip())
    return match.group(1) if match else None


def key_hash(text: str) -> bytes:
    return hash_secret(text.strip())


@dataclass(frozen=True, slots=True)
class GatewayCaller:
    """Who is calling the gateway: an organisation through one of its keys."""

    key_id: str
    organisation: str


# --- who may call what ----------------------------------------------------------------------

# Tiers whose versions are served only to organisations holding an explicit grant for them.
GRANT_TIERS = frozenset({Tier.LICENSED, Tier.SECURED})


def tier_allows(tier: Tier | None, granted: bool) -> bool:
    """May an organisation call a version released under `tier`? No decision yet: no (fail closed).

    Open and hosted versions are served to every key holder; licensed and secured ones only to an
    organisation with an explicit grant (a licensee, or a partner inside the secure programme).
    """
    if tier is None:
        return False
    if tier in GRANT_TIERS:
        return granted
    return controls(tier).gateway_may_serve


# --- backends -------------------------------------------------------------------------------


class BackendKind(StrEnum):
    EMBEDDED = "embedded"  # the version's weights, run in the gateway's own process
    REMOTE = "remote"  # any OpenAI-compatible server (vLLM, TGI, llama.cpp server)


@dataclass(frozen=True, slots=True)
class Backend:
    """A model version bound to where it runs."""

    model: str  # NAME:VERSION, also the model id clients send
    version_id: str
    kind: BackendKind
    url: str | None  # the remote server's base URL, ending in /v1
    remote_model: str | None  # the model name the remote server knows it by
    timeout_s: float
    bound_at: datetime
    bound_by: str
    api_key: str | None = field(default=None, repr=False)  # the remote server's own key, if it needs one


def check_backend_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) > 500:
        raise InvalidInput(
            f"backend URL {url!r} is not an http(s) URL",
            hint="give the server's OpenAI base URL, e.g. http://10.0.0.5:8000/v1",
        )
    return url.rstrip("/")


# --- limits ---------------------------------------------------------------------------------


class ScopeKind(StrEnum):
    KEY = "key"
    ORGANISATION = "organisation"


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one key or one organisation; None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    monthly_tokens: int | None = None
    max_tokens: int | None = None  # per request: the most new tokens one request may ask for

    def as_dict(self) -> dict[str, int | None]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "monthly_tokens": self.monthly_tokens,
            "max_tokens": self.max_tokens,
        }


UNLIMITED = Limits()


def check_limits(limits: Limits) -> Limits:
    for name, value in limits.as_dict().items():
        if value is not None and value < 1:
            raise InvalidInput(f"{name} must be at least 1 (or unset for no limit)", hint="give a positive number")
    return limits


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: `capacity` units, refilled at capacity per minute. `key` names it in the
    shared store (Redis) or in process."""

    key: str
    capacity: int

    @property
    def rate_per_s(self) -> float:
        return self.capacity / 60.0


def take_from_bucket(level: float, updated: float, now: float, capacity: int, cost: float) -> tuple[bool, float, float]:
    """One token-bucket step: (taken, new level, seconds until `cost` would fit).

    The bucket starts full and refills continuously; a cost above the capacity never fits (its
    wait is infinite: the caller turns it into a clear error rather than a retry loop).
    """
    rate = capacity / 60.0
    level = min(float(capacity), level + max(0.0, now - updated) * rate)
    if cost <= level:
        return True, level - cost, 0.0
    if cost > capacity:
        return False, level, math.inf
    return False, level, (cost - level) / rate


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not admitted, and when it may be retried (seconds; inf: never this month)."""

    reason: str
    retry_after_s: float


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(min(seconds, 31 * 86400))))


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


# --- prices and usage -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Price:
    """EUR per million tokens, by direction (input = prompt, output = completion)."""

    model: str
    input_eur_per_mtok: float
    output_eur_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_eur_per_mtok + completion_tokens * self.output_eur_per_mtok) / 1e6


def check_price(input_eur: float, output_eur: float) -> None:
    if not (math.isfinite(input_eur) and math.isfinite(output_eur)) or input_eur < 0 or output_eur < 0:
        raise InvalidInput("prices must be finite and not negative", hint="give EUR per million tokens, e.g. 0.2")


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request, as metered: written ahead to the replica's log, then into the daily totals."""

    request_id: str
    at: datetime
    key_id: str
    organisation: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    blocked: bool = False

    @property
    def day(self) -> str:
        return self.at.strftime("%Y-%m-%d")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "at": self.at.isoformat(),
            "key": self.key_id,
            "org": self.organisation,
            "model": self.model,
            "p": self.prompt_tokens,
            "c": self.completion_tokens,
            "b": self.blocked,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageRecord:
        return cls(
            request_id=str(data["id"]),
            at=datetime.fromisoformat(str(data["at"])),
            key_id=str(data["key"]),
            organisation=str(data["org"]),
            model=str(data["model"]),
            prompt_tokens=int(data["p"]),
            completion_tokens=int(data["c"]),
            blocked=bool(data.get("b", False)),
        )


@dataclass(slots=True)
class DailyUsage:
    day: str
    organisation: str
    key_id: str
    model: str
    requests: int = 0
    blocked: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_eur: float = 0.0

    @property
    def group(self) -> tuple[str, str, str, str]:
        return (self.day, self.organisation, self.key_id, self.model)

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "organisation": self.organisation,
            "key_id": self.key_id,
            "model": self.model,
            "requests": self.requests,
            "blocked": self.blocked,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_eur": round(self.cost_eur, 6),
        }


USAGE_COLUMNS = (
    "day",
    "organisation",
    "key_id",
    "model",
    "requests",
    "blocked",
    "prompt_tokens",
    "completion_tokens",
    "cost_eur",
)


def aggregate(records: Sequence[UsageRecord], prices: dict[str, Price]) -> list[DailyUsage]:
    """Daily totals per (day, organisation, key, model), priced at the prices in force now."""
    totals: dict[tuple[str, str, str, str], DailyUsage] = {}
    for record in records:
        group = (record.day, record.organisation, record.key_id, record.model)
        row = totals.get(group)
        if row is None:
            row = totals[group] = DailyUsage(*group)
        row.requests += 1
        row.blocked += int(record.blocked)
        row.prompt_tokens += record.prompt_tokens
        row.completion_tokens += record.completion_tokens
        price = prices.get(record.model)
        if price is not None:
            row.cost_eur += price.cost(record.prompt_tokens, record.completion_tokens)
    return list(totals.values())


# --- safety ---------------------------------------------------------------------------------

MAX_PATTERNS = 200
MAX_PATTERN_LENGTH = 500


@dataclass(frozen=True, slots=True)
class TextRules:
    """Words or phrases (matched case-insensitively, whole words) and regular expressions."""

    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        return {"keywords": list(self.keywords), "patterns": list(self.patterns)}


@dataclass(frozen=True, slots=True)
class SafetyPolicy:
    """A model's input and output checks, and an optional classifier (see gateway.safety)."""

    model: str
    input: TextRules = field(default_factory=TextRules)
    output: TextRules = field(default_factory=TextRules)
    classifier: str | None = None  # `openai:URL#MODEL` (a moderation endpoint) or `model:DIR`

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input": self.input.as_dict(),
            "output": self.output.as_dict(),
            "classifier": self.classifier,
        }

    @classmethod
    def from_dict(cls, model: str, data: dict[str, Any]) -> SafetyPolicy:
        if not isinstance(data, dict):
            raise InvalidInput("a safety policy is a JSON object", hint=POLICY_HINT)
        unknown = set(data) - {"input", "output", "classifier", "model"}
        if unknown:
            raise InvalidInput(f"unknown policy fields: {', '.join(sorted(unknown))}", hint=POLICY_HINT)
        classifier = data.get("classifier")
        if classifier is not None and not isinstance(classifier, str):
            raise InvalidInput("classifier must be a string", hint=POLICY_HINT)
        return cls(model, _rules(data.get("input"), "input"), _rules(data.get("output"), "output"), classifier)


POLICY_HINT = (
    'give {"input": {"keywords": [...], "patterns": [...]}, "output": {...}, "classifier": "openai:URL#MODEL"?}'
)


def _rules(value: Any, where: str) -> TextRules:
    if value is None:
        return TextRules()
    if not isinstance(value, dict) or set(value) - {"keywords", "patterns"}:
        raise InvalidInput(f"policy {where} must hold only keywords and patterns", hint=POLICY_HINT)
    keywords = value.get("keywords") or []
    patterns = value.get("patterns") or []
    for items in (keywords, patterns):
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            raise InvalidInput(f"policy {where}: keywords and patterns are lists of strings", hint=POLICY_HINT)
        if len(items) > MAX_PATTERNS or any(len(i) > MAX_PATTERN_LENGTH for i in items):
            raise InvalidInput(
                f"policy {where}: at most {MAX_PATTERNS} entries of {MAX_PATTERN_LENGTH} characters",
                hint="split the policy or shorten it",
            )
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise InvalidInput(f"policy {where}: pattern {pattern!r} is not valid: {error}", hint=POLICY_HINT) from None
    return TextRules(tuple(k.strip() for k in keywords), tuple(patterns))


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """Rules compiled once: one alternation for the keywords, each pattern on its own (to name it)."""

    keywords: re.Pattern[str] | None
    patterns: tuple[tuple[str, re.Pattern[str]], ...]

    @classmethod
    def of(cls, rules: TextRules) -> CompiledRules:
        words = None
        if rules.keywords:
            alternatives = "|".join(re.escape(k) for k in sorted(rules.keywords, key=len, reverse=True))
            words = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
        return cls(words, tuple((p, re.compile(p, re.IGNORECASE)) for p in rules.patterns))

    def first_match(self, text: str) -> str | None:
        """The rule that matched (`keyword:...` or `pattern:...`), or None."""
        if self.keywords is not None:
            found = self.keywords.search(text)
            if found:
                return f"keyword:{found.group(0).lower()}"
        for source, pattern in self.patterns:
            if pattern.search(text):
                return f"pattern:{source}"
        return None


class Stage(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class Block:
    """A request the safety layer refused, kept as evidence."""

    id: str
    at: datetime
    key_id: str
    organisation: str
    model: str
    stage: Stage
    rule: str
    excerpt: str  # the start of the text that matched, for the risk desk


EXCERPT_CHARS = 500


def excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


@dataclass(frozen=True, slots=True)
class Alert:
    """Suspicious use of one key, for the risk desk to pick up (with the blocks as evidence)."""

    id: str
    raised_at: datetime
    kind: str
    key_id: str
    organisation: str
    summary: str
    evidence: tuple[dict[str, Any], ...]
    picked_up_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "raised_at": self.raised_at.isoformat(),
            "kind": self.kind,
            "key_id": self.key_id,
            "organisation": self.organisation,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "picked_up_at": None if self.picked_up_at is None else self.picked_up_at.isoformat(),
        }


def repeated_blocks(recent: Sequence[datetime], now: datetime, window_s: float, threshold: int) -> bool:
    """True when `threshold` or more blocks fell inside the last `window_s` seconds."""
    return sum(1 for moment in recent if (now - moment).total_seconds() <= window_s) >= threshold


# --- the OpenAI error shape -----------------------------------------------------------------

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}


def openai_error(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "api_error"), "param": param, "code": code}}
