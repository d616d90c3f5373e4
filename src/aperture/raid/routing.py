"""The routing table: sector x risk domain x member state -> body, legal basis, clocks. Pure.

The table is versioned data (`routing.yaml` in this package is the shipped default; operators adopt
their own with `aperture raid routing adopt FILE`). It is validated when it is loaded: unknown keys,
sectors, risk domains, member states, regimes, clocks and sources are refused with the path of the
offending entry. A route that carries legal clocks must rest on a primary or secondary source: the
rows whose legal basis is still to be verified route the report but set no deadline.

Triage rule (frameworks.md section 6): every route that matches applies (a report may go to several
bodies); RAID keeps ownership of AI-specific risks (deception, autonomy); when nothing matches the
report stays with RAID.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import yaml

from aperture.core.errors import InvalidInput
from aperture.raid.clocks import ClockName
from aperture.raid.domain import Assessment
from aperture.raid.serious import Regime, Seriousness
from aperture.raid.taxonomy import MEMBER_STATES, Sector, Severity
from aperture.raid.tlp import Tlp
from aperture.risk.domain import RiskDomain

MAX_TABLE_BYTES = 256 * 1024
TOP_KEYS = {"version", "title", "updated", "sources", "forwarding_sla_hours", "default_tlp", "routes", "fallback"}
ROUTE_KEYS = {"id", "body", "also", "legal_basis", "when", "clocks", "sources", "verified", "raid_owned", "note"}
WHEN_KEYS = {"sectors", "risk_domains", "member_states", "requires"}


class Verified(StrEnum):
    PRIMARY = "primary"  # read in the legal text
    SECONDARY = "secondary"  # from a summary of it; re-check before relying on it
    UNVERIFIED = "unverified"  # to verify: routes, but carries no clocks


@dataclass(frozen=True, slots=True)
class Condition:
    sectors: frozenset[Sector] | None = None  # None: any
    risk_domains: frozenset[RiskDomain] | None = None
    member_states: frozenset[str] | None = None
    requires: frozenset[Regime] = frozenset()

    def matches(self, assessment: Assessment) -> bool:
        if self.sectors is not None and assessment.sector not in self.sectors:
            return False
        if self.risk_domains is not None and assessment.risk_domain not in self.risk_domains:
            return False
        if self.member_states is not None and assessment.member_state not in self.member_states:
            return False
        return self.requires <= assessment.regimes


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    body: str  # may name {member_state}
    also: tuple[str, ...]
    legal_basis: str
    when: tuple[Condition, ...]  # any of them
    clocks: tuple[ClockName, ...]
    sources: tuple[str, ...]
    verified: Verified
    raid_owned: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class RoutingTable:
    version: int
    title: str
    sources: Mapping[str, str]
    forwarding_sla_hours: Mapping[Severity, int]
    default_tlp: Tlp
    rules: tuple[Rule, ...]
    fallback: Rule
    digest: str  # SHA-256 of the text it was parsed from


@dataclass(frozen=True, slots=True)
class RouteMatch:
    rule_id: str
    body: str
    also: tuple[str, ...]
    legal_basis: str
    clocks: tuple[ClockName, ...]
    sources: tuple[str, ...]
    verified: Verified
    raid_owned: bool
    table_version: int


def route(table: RoutingTable, assessment: Assessment) -> list[RouteMatch]:
    """Every rule that matches, in table order, one per body; the fallback when none does."""
    matches: list[RouteMatch] = []
    seen: set[str] = set()
    for rule in table.rules:
        if not any(condition.matches(assessment) for condition in rule.when):
            continue
        body = render_body(rule.body, assessment.member_state)
        if body in seen:
            continue
        seen.add(body)
        matches.append(_match(rule, body, table.version))
    if not matches:
        matches.append(_match(table.fallback, render_body(table.fallback.body, assessment.member_state), table.version))
    return matches


def render_body(template: str, member_state: str | None) -> str:
    return template.replace("{member_state}", member_state or "the Member State where it occurred")


def _match(rule: Rule, body: str, version: int) -> RouteMatch:
    return RouteMatch(
        rule.id,
        body,
        rule.also,
        rule.legal_basis,
        rule.clocks,
        rule.sources,
        rule.verified,
        rule.raid_owned,
        version,
    )


def forwarding_hours(table: RoutingTable, severity: Severity) -> int:
    return table.forwarding_sla_hours[severity]


# --- parsing ----------------------------------------------------------------------------------


def _bad(where: str, problem: str, hint: str) -> InvalidInput:
    return InvalidInput(f"routing table, {where}: {problem}", hint=hint)


def parse_table(text: str) -> RoutingTable:
    """Parse and validate a routing table (YAML or JSON); every error names where and how to fix it."""
    raw = text.encode("utf-8")
    if len(raw) > MAX_TABLE_BYTES:
        raise _bad("the file", f"{len(raw)} bytes; at most {MAX_TABLE_BYTES}", "split long notes out of the table")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "the file"
        raise _bad(where, "not valid YAML", "check the indentation and quoting") from None
    if not isinstance(data, dict):
        raise _bad("the file", "not a mapping", "start with `version: 1` and a `routes:` list")
    unknown = sorted(set(map(str, data)) - TOP_KEYS)
    if unknown:
        raise _bad("the top level", f"unknown key(s) {', '.join(unknown)}", "keys: " + ", ".join(sorted(TOP_KEYS)))
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad("version", "must be a whole number from 1", "version: 1")
    sources = data.get("sources")
    if (
        not isinstance(sources, dict)
        or not sources
        or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in sources.items())
    ):
        raise _bad("sources", "must map each source key to its citation", 'sources: {AIA: "Reg. (EU) 2024/1689"}')
    sla = _sla(data.get("forwarding_sla_hours"))
    default_tlp = _tlp(data.get("default_tlp", "amber"))
    routes = data.get("routes")
    if not isinstance(routes, list) or not routes:
        raise _bad("routes", "must be a non-empty list", "routes: [{id: ..., body: ..., ...}]")
    rules = tuple(_rule(item, f"routes[{index}]", sources) for index, item in enumerate(routes))
    ids = [rule.id for rule in rules]
    duplicate = sorted({i for i in ids if ids.count(i) > 1})
    if duplicate:
        raise _bad("routes", f"id(s) used twice: {', '.join(duplicate)}", "give each route its own id")
    if "fallback" not in data:
        raise _bad("fallback", "missing", "name where a report goes when no route matches (usually RAID itself)")
    fallback = _rule(data["fallback"], "fallback", sources, fallback=True)
    return RoutingTable(
        version=version,
        title=str(data.get("title", "")),
        sources=dict(sources),
        forwarding_sla_hours=sla,
        default_tlp=default_tlp,
        rules=rules,
        fallback=fallback,
        digest=hashlib.sha256(raw).hexdigest(),
    )


def _sla(value: Any) -> dict[Severity, int]:
    if not isinstance(value, dict):
        raise _bad(
            "forwarding_sla_hours", "must map every severity to hours", "forwarding_sla_hours: {incident: 72, ...}"
        )
    found: dict[Severity, int] = {}
    for key, hours in value.items():
        try:
            severity = Severity(str(key))
        except ValueError:
            raise _bad(
                f"forwarding_sla_hours.{key}", "not a severity", "severities: " + ", ".join(s.value for s in Severity)
            ) from None
        if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 24 * 365:
            raise _bad(f"forwarding_sla_hours.{key}", "must be 1 to 8760 hours", f"{key}: 72")
        found[severity] = hours
    missing = [s.value for s in Severity if s not in found]
    if missing:
        raise _bad("forwarding_sla_hours", f"no hours for {', '.join(missing)}", "give every severity its hours")
    return found


def _tlp(value: Any) -> Tlp:
    try:
        return Tlp(str(value).lower().removeprefix("tlp:"))
    except ValueError:
        raise _bad(
            "default_tlp", f"{value!r} is not a TLP 2.0 label", "clear, green, amber, amber+strict or red"
        ) from None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list) and any(isinstance(item, bool) for item in value):
        raise _bad(where, "holds true/false: YAML reads NO, ON, Y as booleans", 'quote such names: ["NO"]')
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise _bad(where, "must be a list of names", f"{where.split('.')[-1]}: [name, ...]")
    return tuple(item.strip() for item in value)


def _rule(item: Any, where: str, sources: Mapping[str, str], *, fallback: bool = False) -> Rule:
    if not isinstance(item, dict):
        raise _bad(where, "must be a mapping", "id, body, legal_basis, when, clocks, sources, verified")
    unknown = sorted(set(map(str, item)) - ROUTE_KEYS)
    if unknown:
        raise _bad(where, f"unknown key(s) {', '.join(unknown)}", "keys: " + ", ".join(sorted(ROUTE_KEYS)))
    for key in ("id", "body", "legal_basis"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise _bad(f"{where}.{key}", "missing or empty", f"give the route's {key.replace('_', ' ')}")
    try:
        verified = Verified(str(item.get("verified", "")))
    except ValueError:
        raise _bad(
            f"{where}.verified", "must say how the legal basis was checked", "primary, secondary or unverified"
        ) from None
    clocks: list[ClockName] = []
    for index, name in enumerate(_strings(item.get("clocks"), f"{where}.clocks")):
        try:
            clocks.append(ClockName(name))
        except ValueError:
            raise _bad(
                f"{where}.clocks[{index}]",
                f"unknown clock {name!r}",
                "clocks: " + ", ".join(c.value for c in ClockName if c is not ClockName.RAID_FORWARDING),
            ) from None
    if ClockName.RAID_FORWARDING in clocks:
        raise _bad(f"{where}.clocks", "raid-forwarding is added to every route by the desk", "leave it out")
    if clocks and verified is Verified.UNVERIFIED:
        raise _bad(
            f"{where}.clocks",
            "a route whose legal basis is unverified sets no legal deadline",
            "verify the basis (verified: primary or secondary) or remove the clocks",
        )
    cited = _strings(item.get("sources"), f"{where}.sources")
    if not cited:
        raise _bad(f"{where}.sources", "no source cited", "cite the keys of the `sources:` map this route rests on")
    missing = [key for key in cited if key not in sources]
    if missing:
        raise _bad(f"{where}.sources", f"unknown source key(s) {', '.join(missing)}", "add them to `sources:` first")
    when = item.get("when", {} if fallback else None)
    if when is None:
        raise _bad(
            f"{where}.when", "missing", "say when the route applies: sectors, risk_domains, member_states, requires"
        )
    conditions = when if isinstance(when, list) else [when]
    if not conditions:
        raise _bad(f"{where}.when", "an empty list never matches", "give at least one condition")
    raid_owned = item.get("raid_owned", fallback)
    if not isinstance(raid_owned, bool):
        raise _bad(f"{where}.raid_owned", "must be true or false", "raid_owned: true")
    return Rule(
        id=item["id"].strip(),
        body=item["body"].strip(),
        also=_strings(item.get("also"), f"{where}.also"),
        legal_basis=item["legal_basis"].strip(),
        when=tuple(
            _condition(c, f"{where}.when[{i}]" if isinstance(when, list) else f"{where}.when")
            for i, c in enumerate(conditions)
        ),
        clocks=tuple(clocks),
        sources=cited,
        verified=verified,
        raid_owned=raid_owned,
        note=str(item.get("note", "")),
    )


def _condition(value: Any, where: str) -> Condition:
    if not isinstance(value, dict):
        raise _bad(where, "must be a mapping", "e.g. {sectors: [finance]}")
    unknown = sorted(set(map(str, value)) - WHEN_KEYS)
    if unknown:
        raise _bad(where, f"unknown key(s) {', '.join(unknown)}", "keys: " + ", ".join(sorted(WHEN_KEYS)))
    return Condition(
        sectors=_enum_set(value, "sectors", Sector, where),
        risk_domains=_enum_set(value, "risk_domains", RiskDomain, where),
        member_states=_states(value, where),
        requires=_enum_set(value, "requires", Regime, where) or frozenset(),
    )


def _enum_set(value: Mapping[str, Any], key: str, kind: type[StrEnum], where: str) -> Any:
    if key not in value or value[key] in ("*", "any"):
        return None
    found = []
    for index, name in enumerate(_strings(value[key], f"{where}.{key}")):
        try:
            found.append(kind(name))
        except ValueError:
            raise _bad(
                f"{where}.{key}[{index}]",
                f"unknown {key[:-1].replace('_', ' ')} {name!r}",
                "one of: " + ", ".join(kind),
            ) from None
    return frozenset(found)


def _states(value: Mapping[str, Any], where: str) -> frozenset[str] | None:
    if "member_states" not in value or value["member_states"] in ("*", "any"):
        return None
    found = _strings(value["member_states"], f"{where}.member_states")
    bad = [code for code in found if code not in MEMBER_STATES]
    if bad:
        raise _bad(f"{where}.member_states", f"not EU member states: {', '.join(bad)}", "ISO 3166-1 codes, e.g. FR")
    return frozenset(found)


def describe(table: RoutingTable) -> list[dict[str, Any]]:
    """The table as plain data, for `--json` and the pages."""
    rows: list[dict[str, Any]] = []
    for rule in (*table.rules, table.fallback):
        rows.append(
            {
                "id": rule.id,
                "body": rule.body,
                "also": list(rule.also),
                "legal_basis": rule.legal_basis,
                "clocks": [c.value for c in rule.clocks],
                "sources": {key: table.sources[key] for key in rule.sources},
                "verified": rule.verified.value,
                "raid_owned": rule.raid_owned,
                "when": [_condition_dict(c) for c in rule.when],
                "note": rule.note,
            }
        )
    return rows


def _condition_dict(condition: Condition) -> dict[str, Any]:
    def values(items: Sequence[str] | frozenset[Any] | None) -> list[str] | str:
        return "*" if items is None else sorted(str(i) for i in items)

    return {
        "sectors": values(condition.sectors),
        "risk_domains": values(condition.risk_domains),
        "member_states": values(condition.member_states),
        "requires": sorted(r.value for r in condition.requires),
    }


@dataclass(frozen=True, slots=True)
class Route:
    """A route chosen for an incident, with whether the law requires the report to go there."""

    id: str
    incident_id: str
    match: RouteMatch
    required_by_law: bool
    created_at: datetime
    forwarded_at: datetime | None = None


def required_by_law(match: RouteMatch, provider_is_institution: bool, seriousness: Seriousness) -> bool:
    """The institution must report it itself: it is the provider, and a clock of this route applies.

    RAID is not a regulator's agent: a report about someone else's model goes on only as far as the
    reporter consented and the sharing policy allows (disclosure.may_forward)."""
    if not provider_is_institution or match.raid_owned:
        return False
    if ClockName.AI_ACT_73 in match.clocks and seriousness.ai_act.applies:
        return True
    if ClockName.COP_9_3 in match.clocks and seriousness.code_of_practice.applies:
        return True
    return any(clock in match.clocks for clock in (ClockName.NIS2, ClockName.CRA))
