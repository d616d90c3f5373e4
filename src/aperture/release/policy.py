"""Release policy as code: parse and validate a policy document, and decide a tier from it.

A policy is a YAML document an operator can read (docs/release.md explains how to write one;
`policies/default.yaml` is the shipped default with the source of every rule). It is parsed
into frozen dataclasses here; `decide` is pure, deterministic and replayable: the same profile,
facts, policy and moment give the same decision, and nothing is ever a silent pass (an unknown
rule type, a threshold on an unknown metric, or contradictory lines are errors at load time;
missing evidence is an explicit "insufficient evidence" outcome at decision time).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

import yaml

from aperture.core.errors import InvalidInput
from aperture.release.domain import TIERS, Tier

API_VERSION = "aperture/release-policy/v1"
MAX_POLICY_BYTES = 1024 * 1024


class Level(IntEnum):
    """How far a risk domain's capability has gone, from the evidence (CoP Measure 4.1 risk tiers)."""

    LOW = 0
    NOTABLE = 1
    ELEVATED = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: Any, where: str) -> Level:
        try:
            return cls[str(text).upper()]
        except KeyError:
            raise _error(where, f"unknown level {text!r}", "use low, notable, elevated or critical") from None


DOMAINS = ("bio", "chem", "radiological-nuclear", "cyber-offence", "autonomy", "persuasion", "other")
SAFEGUARDS = ("refusal", "jailbreak-robustness", "over-refusal", "tamper-resistance")
SUBJECTS = DOMAINS + SAFEGUARDS
# Metrics that evidence headlines carry (risk area suites and mapped imports). Lower-is-riskier
# metrics are the safeguard rates where more is safer.
KNOWN_METRICS: dict[str, bool] = {
    "accuracy": True,
    "win_rate": True,
    "attack_success_rate": True,
    "refusal_rate": False,
    "full_compliance_rate": False,
}
RULE_TYPES = (
    "capability_threshold",
    "finding_level",
    "level_cap",
    "marginal_risk",
    "requires_evidence",
    "requires_safeguard",
    "requires_tamper_resistance",
    "legal_flag",
)
CONDITION_KINDS = (
    "any_domain_at_least",
    "parameters_at_most",
    "training_flop_at_most",
    "intended_use_in",
    "all_of",
    "any_of",
    "not",
)


def _error(where: str, problem: str, hint: str) -> InvalidInput:
    return InvalidInput(f"release policy: {where}: {problem}", hint=hint)


def _suggest(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


# --- the document ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """A named or inline test on the facts and the domain levels."""

    kind: str
    value: Any  # a Level, a number, a tuple of strings, or a tuple of condition names


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    type: str
    source: str
    domain: str | None = None
    level: Level | None = None
    metric: str | None = None
    line: float | None = None  # the threshold; crossed on the conservative end of the 95% CI
    suite: str | None = None
    tier: Tier | None = None
    tiers: tuple[Tier, ...] = ()
    subjects: tuple[str, ...] = ()
    safeguard: str | None = None
    when: str | None = None  # a condition name
    waived_when: str | None = None
    caps: tuple[tuple[Level, Tier], ...] = ()
    at_most: Level | None = None
    flop_above: float | None = None
    obligations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReferenceModel:
    """An openly available model and what it was measured at (marginal risk is judged against these)."""

    name: str
    suite: str
    metric: str
    value: float
    source: str


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: str
    description: str
    rules: tuple[Rule, ...]
    conditions: Mapping[str, Condition]
    reference_models: tuple[ReferenceModel, ...]
    digest: str  # sha256 of the document's bytes

    def rules_of(self, rule_type: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.type == rule_type]

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


_RULE_KEYS: dict[str, set[str]] = {
    "capability_threshold": {"domain", "level", "metric", "above", "below", "suite"},
    "finding_level": {"domains"},
    "level_cap": {"caps"},
    "marginal_risk": {"at_most"},
    "requires_evidence": {"tier", "tiers", "subjects", "waived_when"},
    "requires_safeguard": {"tier", "tiers", "safeguard", "metric", "at_least", "at_most", "when"},
    "requires_tamper_resistance": {"tier", "tiers", "when"},
    "legal_flag": {"training_flop_above", "obligations"},
}
_COMMON_KEYS = {"id", "type", "source"}


def parse_policy(text: str | bytes, source: str = "policy") -> Policy:
    """Parse and validate a policy document; every problem is an `InvalidInput` naming the rule and the fix."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > MAX_POLICY_BYTES:
        raise _error(source, f"{len(data)} bytes is over the {MAX_POLICY_BYTES} byte limit", "split the policy")
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as error:
        raise _error(source, f"not valid YAML ({error})", "fix the YAML syntax") from None
    if not isinstance(document, dict):
        raise _error(
            source, "the document is not a mapping", f"start from the shipped default (apiVersion {API_VERSION})"
        )
    _only_keys(
        document,
        {"apiVersion", "name", "version", "description", "conditions", "reference_open_models", "rules"},
        source,
    )
    if document.get("apiVersion") != API_VERSION:
        raise _error(source, f"apiVersion is {document.get('apiVersion')!r}", f"set apiVersion: {API_VERSION}")
    name, version = document.get("name"), document.get("version")
    if not isinstance(name, str) or not name.strip():
        raise _error(source, "the policy has no name", "add `name: <policy name>`")
    if not isinstance(version, str | int) or not str(version).strip():
        raise _error(source, "the policy has no version", "add `version: 1` and raise it on every change")
    conditions = _parse_conditions(document.get("conditions") or {}, source)
    references = _parse_references(document.get("reference_open_models") or [], source)
    raw_rules = document.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _error(source, "the policy has no rules", "add a `rules:` list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules):
        rule = _parse_rule(raw, f"{source}: rule {index + 1}", conditions)
        if rule.id in seen:
            raise _error(source, f"rule id {rule.id!r} is used twice", "give every rule its own id")
        seen.add(rule.id)
        rules.append(rule)
    policy = Policy(
        name=name.strip(),
        version=str(version).strip(),
        description=str(document.get("description") or "").strip(),
        rules=tuple(rules),
        conditions=conditions,
        reference_models=references,
        digest=hashlib.sha256(data).hexdigest(),
    )
    _check_consistency(policy, source)
    return policy


def _only_keys(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise _error(
                where,
                f"unknown key {key!r}",
                f"{_suggest(str(key), sorted(allowed))}allowed: {', '.join(sorted(allowed))}",
            )


def _parse_conditions(raw: Any, source: str) -> dict[str, Condition]:
    if not isinstance(raw, dict):
        raise _error(source, "`conditions` is not a mapping", "write `conditions: {name: {kind: value}}`")
    parsed = {str(name): _parse_condition(body, f"{source}: condition {name!r}") for name, body in raw.items()}
    for name, condition in parsed.items():
        for ref in _references(condition):
            if ref not in parsed:
                raise _error(
                    f"{source}: condition {name!r}",
                    f"refers to undefined condition {ref!r}",
                    f"{_suggest(ref, list(parsed))}define it under `conditions`",
                )
    _refuse_cycles(parsed, source)
    return parsed


def _references(condition: Condition) -> tuple[str, ...]:
    if condition.kind in ("all_of", "any_of"):
        return tuple(condition.value)
    if condition.kind == "not":
        return (condition.value,)
    return ()


def _refuse_cycles(conditions: Mapping[str, Condition], source: str) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise _error(source, f"conditions refer to each other in a circle ({cycle})", "break the circle")
        state[name] = 1
        for ref in _references(conditions[name]):
            visit(ref, [*path, name])
        state[name] = 2

    for name in sorted(conditions):
        visit(name, [])


def _parse_condition(body: Any, where: str) -> Condition:
    if not isinstance(body, dict) or len(body) != 1:
        raise _error(
            where, "a condition is a mapping with exactly one test", f"use one of: {', '.join(CONDITION_KINDS)}"
        )
    ((kind, value),) = body.items()
    if kind not in CONDITION_KINDS:
        raise _error(
            where,
            f"unknown condition {kind!r}",
            f"{_suggest(str(kind), CONDITION_KINDS)}use one of: {', '.join(CONDITION_KINDS)}",
        )
    if kind == "any_domain_at_least":
        return Condition(kind, Level.parse(value, where))
    if kind in ("parameters_at_most", "training_flop_at_most"):
        return Condition(kind, _number(value, where, kind))
    if kind == "not":
        if not isinstance(value, str):
            raise _error(where, "`not` takes a condition name", "write `not: <condition name>`")
        return Condition(kind, value)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _error(where, f"`{kind}` takes a list of names", f"write `{kind}: [a, b]`")
    return Condition(kind, tuple(value))


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _error(where, f"`{key}` is not a number", f"write e.g. `{key}: 1.0e25`")
    try:
        number = float(value)
    except ValueError:
        raise _error(where, f"`{key}` is not a number ({value!r})", f"write e.g. `{key}: 1.0e25`") from None
    if not math.isfinite(number) or number < 0:
        raise _error(where, f"`{key}` must be a finite number >= 0", f"fix `{key}`")
    return number


def _parse_references(raw: Any, source: str) -> tuple[ReferenceModel, ...]:
    if not isinstance(raw, list):
        raise _error(source, "`reference_open_models` is not a list", "list {name, suite, metric, value, source}")
    models = []
    for index, item in enumerate(raw):
        where = f"{source}: reference model {index + 1}"
        if not isinstance(item, dict):
            raise _error(where, "not a mapping", "write {name, suite, metric, value, source}")
        _only_keys(item, {"name", "suite", "metric", "value", "source"}, where)
        metric = str(item.get("metric", ""))
        if metric not in KNOWN_METRICS:
            raise _error(
                where,
                f"unknown metric {metric!r}",
                f"{_suggest(metric, list(KNOWN_METRICS))}use one of: {', '.join(KNOWN_METRICS)}",
            )
        value = _number(item.get("value"), where, "value")
        if not item.get("source"):
            raise _error(where, "a reference figure needs its source", "add `source:` (paper, model card)")
        models.append(ReferenceModel(str(item.get("name")), str(item.get("suite")), metric, value, str(item["source"])))
    return tuple(models)


def _tiers(raw: Mapping[str, Any], where: str) -> tuple[Tier, ...]:
    values = raw.get("tiers") if "tiers" in raw else [raw.get("tier")]
    if not isinstance(values, list) or not values or values == [None]:
        raise _error(where, "no tier named", "add `tier: open` (or `tiers: [open, licensed]`)")
    tiers = []
    for value in values:
        try:
            tiers.append(Tier.parse(str(value)))
        except ValueError as error:
            raise _error(where, str(error), "fix the tier name") from None
    return tuple(tiers)


def _condition_ref(raw: Mapping[str, Any], key: str, where: str, conditions: Mapping[str, Condition]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in conditions:
        raise _error(
            where,
            f"`{key}` names undefined condition {value!r}",
            f"{_suggest(str(value), list(conditions))}define it under `conditions`",
        )
    return value


def _parse_rule(raw: Any, where: str, conditions: Mapping[str, Condition]) -> Rule:
    if not isinstance(raw, dict):
        raise _error(where, "a rule is a mapping", "write `- id: ...\\n  type: ...`")
    rule_id, rule_type = raw.get("id"), raw.get("type")
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise _error(where, "the rule has no id", "add `id: <short-name>`")
    where = f"{where} ({rule_id})"
    if rule_type not in RULE_TYPES:
        raise _error(
            where,
            f"unknown rule type {rule_type!r}",
            f"{_suggest(str(rule_type), RULE_TYPES)}use one of: {', '.join(RULE_TYPES)}",
        )
    _only_keys(raw, _COMMON_KEYS | _RULE_KEYS[rule_type], where)
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _error(where, "the rule does not say where it comes from", "add `source:` (seed, framework, regulation)")
    base: dict[str, Any] = {"id": rule_id, "type": rule_type, "source": source.strip()}
    if rule_type == "capability_threshold":
        domain = str(raw.get("domain"))
        if domain not in DOMAINS:
            raise _error(
                where, f"unknown risk domain {domain!r}", f"{_suggest(domain, DOMAINS)}use one of: {', '.join(DOMAINS)}"
            )
        metric = str(raw.get("metric"))
        if metric not in KNOWN_METRICS:
            raise _error(
                where,
                f"threshold on unknown metric {metric!r}",
                f"{_suggest(metric, list(KNOWN_METRICS))}use one of: {', '.join(KNOWN_METRICS)}",
            )
        if ("above" in raw) == ("below" in raw):
            raise _error(
                where, "a threshold needs exactly one of `above` or `below`", "riskier-when-higher metrics use `above`"
            )
        if ("above" in raw) != KNOWN_METRICS[metric]:
            riskier = "higher" if KNOWN_METRICS[metric] else "lower"
            raise _error(
                where, f"{metric} is riskier when {riskier}", f"use `{'above' if KNOWN_METRICS[metric] else 'below'}`"
            )
        line = _number(raw.get("above", raw.get("below")), where, "above" if "above" in raw else "below")
        level = Level.parse(raw.get("level"), where)
        if level is Level.LOW:
            raise _error(
                where, "a threshold cannot define `low` (low is what no crossing means)", "use notable or above"
            )
        return Rule(**base, domain=domain, level=level, metric=metric, line=line, suite=raw.get("suite"))
    if rule_type == "finding_level":
        domains = raw.get("domains", list(DOMAINS))
        if not isinstance(domains, list) or any(d not in DOMAINS for d in domains):
            raise _error(where, "`domains` must list risk domains", f"use any of: {', '.join(DOMAINS)}")
        return Rule(**base, subjects=tuple(domains))
    if rule_type == "level_cap":
        caps = raw.get("caps")
        if not isinstance(caps, dict) or {str(k).lower() for k in caps} != {lvl.label for lvl in Level}:
            raise _error(
                where,
                "`caps` must map every level to a tier",
                "write caps: {low: open, notable: open, elevated: licensed, critical: secured}",
            )
        parsed = []
        for key, value in caps.items():
            try:
                parsed.append((Level.parse(key, where), Tier.parse(str(value))))
            except ValueError as error:
                raise _error(where, str(error), "fix the tier name") from None
        parsed.sort()
        for (low_level, low_tier), (high_level, high_tier) in itertools.pairwise(parsed):
            if high_tier.more_open_than(low_tier):
                raise _error(
                    where,
                    f"contradictory caps: {high_level.label} allows {high_tier} but {low_level.label} only {low_tier}",
                    "a higher level may never allow a more open tier",
                )
        return Rule(**base, caps=tuple(parsed))
    if rule_type == "marginal_risk":
        return Rule(**base, at_most=Level.parse(raw.get("at_most", "notable"), where))
    if rule_type == "requires_evidence":
        subjects = raw.get("subjects")
        if not isinstance(subjects, list) or not subjects or any(s not in SUBJECTS for s in subjects):
            bad = [s for s in subjects or [] if s not in SUBJECTS] if isinstance(subjects, list) else subjects
            raise _error(
                where,
                f"`subjects` must list risk domains or safeguards (bad: {bad})",
                f"use any of: {', '.join(SUBJECTS)}",
            )
        return Rule(
            **base,
            tiers=_tiers(raw, where),
            subjects=tuple(subjects),
            waived_when=_condition_ref(raw, "waived_when", where, conditions),
        )
    if rule_type == "requires_safeguard":
        safeguard = str(raw.get("safeguard"))
        if safeguard not in SAFEGUARDS:
            raise _error(
                where,
                f"unknown safeguard {safeguard!r}",
                f"{_suggest(safeguard, SAFEGUARDS)}use one of: {', '.join(SAFEGUARDS)}",
            )
        metric = str(raw.get("metric"))
        if metric not in KNOWN_METRICS:
            raise _error(
                where,
                f"requirement on unknown metric {metric!r}",
                f"{_suggest(metric, list(KNOWN_METRICS))}use one of: {', '.join(KNOWN_METRICS)}",
            )
        if ("at_least" in raw) == ("at_most" in raw):
            raise _error(
                where, "a safeguard requirement needs exactly one of `at_least` or `at_most`", "e.g. at_least: 0.8"
            )
        bound_key = "at_least" if "at_least" in raw else "at_most"
        if (bound_key == "at_least") == KNOWN_METRICS[metric]:
            raise _error(
                where, f"`{bound_key}` on {metric} would reward the riskier direction", "swap at_least/at_most"
            )
        return Rule(
            **base,
            tiers=_tiers(raw, where),
            safeguard=safeguard,
            metric=metric,
            line=_number(raw[bound_key], where, bound_key),
            when=_condition_ref(raw, "when", where, conditions),
        )
    if rule_type == "requires_tamper_resistance":
        return Rule(**base, tiers=_tiers(raw, where), when=_condition_ref(raw, "when", where, conditions))
    obligations = raw.get("obligations")
    if not isinstance(obligations, list) or not obligations or not all(isinstance(o, str) for o in obligations):
        raise _error(where, "`obligations` must list what applies", 'write obligations: ["...", ...]')
    return Rule(
        **base,
        flop_above=_number(raw.get("training_flop_above"), where, "training_flop_above"),
        obligations=tuple(obligations),
    )


def _check_consistency(policy: Policy, source: str) -> None:
    if len(policy.rules_of("level_cap")) != 1:
        raise _error(source, "a policy needs exactly one level_cap rule", "add one rule of type level_cap")
    lines: dict[tuple[str, str, str | None], list[Rule]] = {}
    for rule in policy.rules_of("capability_threshold"):
        lines.setdefault((rule.domain or "", rule.metric or "", rule.suite), []).append(rule)
    for (domain, metric, _suite), group in lines.items():
        ordered = sorted(group, key=lambda r: r.level or 0)
        for lower, higher in itertools.pairwise(ordered):
            assert lower.line is not None and higher.line is not None
            if lower.level == higher.level:
                raise _error(
                    source,
                    f"rules {lower.id} and {higher.id} both define {domain} {lower.level and lower.level.label}",
                    "keep one",
                )
            riskier_higher = KNOWN_METRICS[metric]
            if (higher.line <= lower.line) if riskier_higher else (higher.line >= lower.line):
                raise _error(
                    source,
                    f"contradictory thresholds for {domain} {metric}: {higher.id} "
                    f"({higher.level and higher.level.label}) at {higher.line} is not beyond {lower.id} "
                    f"({lower.level and lower.level.label}) at {lower.line}",
                    "a higher level must sit further in the risky direction",
                )


# --- lines a page can draw ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyLine:
    """One number of a policy that a metric is judged against, for drawing on that metric's chart.

    A capability threshold marks a level when the conservative end of the interval is past the
    line; a safeguard requirement needs the conservative end on the safe side of it.
    """

    rule_id: str
    rule_type: str  # capability_threshold | requires_safeguard
    subject: str  # a risk domain or safeguard
    metric: str
    at: float
    higher_is_riskier: bool
    meaning: str  # "notable when above 40%", "needs at least 80%"
    applies: str  # when the rule is in play: "sets the level" or the tiers and condition
    source: str

    @property
    def label(self) -> str:
        return f"{self.rule_id}: {self.meaning}"


def _applies(rule: Rule) -> str:
    tiers = ", ".join(str(tier) for tier in rule.tiers) or "every tier"
    return f"required for {tiers}" + (f" when {rule.when}" if rule.when else "")


def policy_lines(policy: Policy) -> tuple[PolicyLine, ...]:
    """The policy's thresholds and safeguard requirements, each with the subject and metric it applies to."""
    lines = []
    for rule in policy.rules:
        if rule.line is None or rule.metric is None:
            continue
        riskier_higher = KNOWN_METRICS[rule.metric]
        percent = f"{100 * rule.line:g}%"
        if rule.type == "capability_threshold" and rule.domain is not None and rule.level is not None:
            side = "above" if riskier_higher else "below"
            lines.append(
                PolicyLine(
                    rule.id,
                    rule.type,
                    rule.domain,
                    rule.metric,
                    rule.line,
                    riskier_higher,
                    f"{rule.level.label} when {side} {percent}",
                    f"sets the {rule.domain} level to {rule.level.label}",
                    rule.source,
                )
            )
        elif rule.type == "requires_safeguard" and rule.safeguard is not None:
            need = "at most" if riskier_higher else "at least"
            lines.append(
                PolicyLine(
                    rule.id,
                    rule.type,
                    rule.safeguard,
                    rule.metric,
                    rule.line,
                    riskier_higher,
                    f"needs {need} {percent}",
                    _applies(rule),
                    rule.source,
                )
            )
    return tuple(lines)


# --- decision inputs -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One item of a risk profile's evidence, as the policy sees it."""

    id: str
    kind: str  # run | import | finding | tamper
    subject: str  # a risk domain or safeguard
    metric: str | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    n: int | None = None
    suite: str | None = None
    level: Level | None = None  # an expert finding's declared level
    broken: bool | None = None  # tamper: did any safeguard break under the grid
    title: str = ""


@dataclass(frozen=True, slots=True)
class ProfileView:
    """What `decide` reads of a risk profile: the version it came from and its evidence."""

    reference: str
    profile_version: int
    evidence: tuple[EvidenceItem, ...]


@dataclass(frozen=True, slots=True)
class Facts:
    """Proportionality inputs (seed 002): size, compute, modality, intended use, what is already open."""

    parameters: int | None = None
    training_flop: float | None = None
    modalities: tuple[str, ...] = ()
    intended_use: str | None = None
    comparable_open_model: str | None = None  # declared by the proposer: weights of comparable capability are open

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "training_flop": self.training_flop,
            "modalities": list(self.modalities),
            "intended_use": self.intended_use,
            "comparable_open_model": self.comparable_open_model,
        }


# --- the decision --------------------------------------------------------------------------


PASS, FAIL, INSUFFICIENT, NOT_APPLICABLE, INFO = "pass", "fail", "insufficient-evidence", "not-applicable", "info"


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    type: str
    outcome: str
    reason: str
    evidence: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "type": self.type,
            "outcome": self.outcome,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "tiers": list(self.tiers),
            "missing": list(self.missing),
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class DomainLevel:
    domain: str
    level: Level | None  # None: no evidence at all
    reason: str
    evidence: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "level": self.level.label if self.level is not None else "unassessed",
            "reason": self.reason,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class TierDecision:
    reference: str
    profile_version: int
    policy: str
    policy_version: str
    policy_digest: str
    decided_at: datetime
    tier: Tier
    levels: tuple[DomainLevel, ...]
    results: tuple[RuleResult, ...]
    allowed: Mapping[str, bool]
    missing: tuple[str, ...]
    would_allow: Mapping[str, tuple[str, ...]]  # more open tier -> the evidence it would need
    obligations: tuple[str, ...]
    facts: Facts

    @property
    def most_open_reachable_with_evidence(self) -> Tier | None:
        for tier in TIERS:
            if tier.more_open_than(self.tier) and tier.value in self.would_allow:
                return tier
        return None

    def summary(self) -> str:
        text = f"{self.reference}: {self.tier} under {self.policy} v{self.policy_version}"
        target = self.most_open_reachable_with_evidence
        if target is not None:
            text += f"; to be {target}, it needs: {'; '.join(self.would_allow[target.value])}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.reference,
            "profile_version": self.profile_version,
            "policy": {"name": self.policy, "version": self.policy_version, "digest": self.policy_digest},
            "decided_at": self.decided_at.isoformat(),
            "tier": self.tier.value,
            "summary": self.summary(),
            "levels": [level.to_dict() for level in self.levels],
            "rules": [result.to_dict() for result in self.results],
            "allowed": dict(self.allowed),
            "missing": list(self.missing),
            "would_allow": {tier: list(needs) for tier, needs in self.would_allow.items()},
            "obligations": list(self.obligations),
            "facts": self.facts.to_dict(),
        }


def _crosses(rule: Rule, item: EvidenceItem) -> bool:
    assert rule.line is not None and rule.metric is not None
    if item.metric != rule.metric or item.low is None or item.high is None:
        return False
    if rule.suite is not None and item.suite != rule.suite:
        return False
    return item.low > rule.line if KNOWN_METRICS[rule.metric] else item.high < rule.line


def _domain_levels(policy: Policy, profile: ProfileView, results: list[RuleResult]) -> dict[str, DomainLevel]:
    thresholds = policy.rules_of("capability_threshold")
    finding_domains = {d for rule in policy.rules_of("finding_level") for d in rule.subjects}
    references = policy.reference_models
    marginal = policy.rules_of("marginal_risk")
    levels: dict[str, DomainLevel] = {}
    for domain in DOMAINS:
        items = [item for item in profile.evidence if item.subject == domain]
        if not items:
            levels[domain] = DomainLevel(domain, None, "no evidence", ())
            continue
        level, reasons, used = Level.LOW, [], []
        for rule in thresholds:
            if rule.domain != domain:
                continue
            for item in items:
                if _crosses(rule, item):
                    used.append(item.id)
                    reasons.append(
                        f"{rule.id}: {item.metric} {item.value:.3f} "
                        f"(95% CI {item.low:.3f}-{item.high:.3f}) crosses {rule.line}"
                    )
                    assert rule.level is not None
                    level = max(level, rule.level)
                    results.append(RuleResult(rule.id, rule.type, INFO, reasons[-1], (item.id,), source=rule.source))
        if domain in finding_domains:
            for item in items:
                if item.kind == "finding" and item.level is not None and item.level > Level.LOW:
                    used.append(item.id)
                    reasons.append(f"expert finding {item.id} ({item.title}) says {item.level.label}")
                    level = max(level, item.level)
        measured = [item for item in items if item.metric is not None]
        ceiling = marginal[0].at_most if marginal else None
        if marginal and ceiling is not None and ceiling < level < Level.CRITICAL:
            rule = marginal[0]
            for item in measured:
                reference = next(
                    (
                        r
                        for r in references
                        if r.suite == item.suite
                        and r.metric == item.metric
                        and item.high is not None
                        and item.high <= r.value
                    ),
                    None,
                )
                if (
                    reference is not None
                    and item.id in used
                    and not any(i.kind == "finding" and i.level is not None and i.level > ceiling for i in items)
                ):
                    reason = (
                        f"{rule.id}: {item.suite} {item.metric} upper bound {item.high:.3f} is at or below the openly "
                        f"available {reference.name} ({reference.value}, {reference.source}); marginal risk caps the "
                        f"level at {ceiling.label}"
                    )
                    results.append(RuleResult(rule.id, rule.type, INFO, reason, (item.id,), source=rule.source))
                    reasons.append(reason)
                    level = ceiling
                    break
        if not reasons:
            reasons.append("evidence crosses no threshold")
        levels[domain] = DomainLevel(
            domain, level, "; ".join(reasons), tuple(dict.fromkeys(used or [i.id for i in items]))
        )
    return levels


def _holds(
    name: str | None,
    policy: Policy,
    facts: Facts,
    levels: Mapping[str, DomainLevel],
    waived: frozenset[str] = frozenset(),
) -> bool:
    """Does the named condition hold? Unassessed domains that some rule requires evidence for
    count as reaching any level (fail closed) unless proportionality waived them."""
    if name is None:
        return True
    condition = policy.conditions[name]
    kind, value = condition.kind, condition.value
    if kind == "any_domain_at_least":
        required = {s for rule in policy.rules_of("requires_evidence") for s in rule.subjects} - waived
        return any(
            (level.level is None and level.domain in required) or (level.level is not None and level.level >= value)
            for level in levels.values()
        )
    if kind == "parameters_at_most":
        return facts.parameters is not None and facts.parameters <= value
    if kind == "training_flop_at_most":
        return facts.training_flop is not None and facts.training_flop <= value
    if kind == "intended_use_in":
        return facts.intended_use is not None and facts.intended_use.strip().lower() in {v.lower() for v in value}
    if kind == "all_of":
        return all(_holds(ref, policy, facts, levels, waived) for ref in value)
    if kind == "any_of":
        return any(_holds(ref, policy, facts, levels, waived) for ref in value)
    return not _holds(value, policy, facts, levels, waived)


def _latest(profile: ProfileView, subject: str, metric: str | None = None) -> EvidenceItem | None:
    for item in profile.evidence:  # newest first
        if (
            item.subject == subject
            and (metric is None or item.metric == metric)
            and (metric is None or item.low is not None)
        ):
            return item
    return None


def decide(profile: ProfileView, facts: Facts, policy: Policy, now: datetime) -> TierDecision:
    """The most open tier the policy allows for this evidence and these facts, with every reason."""
    results: list[RuleResult] = []
    levels = _domain_levels(policy, profile, results)
    blocked: dict[Tier, list[str]] = {tier: [] for tier in TIERS}
    needs: dict[Tier, list[str]] = {tier: [] for tier in TIERS}
    missing: list[str] = []
    waived = frozenset(
        subject
        for rule in policy.rules_of("requires_evidence")
        if rule.waived_when and _holds(rule.waived_when, policy, facts, levels)
        for subject in rule.subjects
    )

    (cap_rule,) = policy.rules_of("level_cap")
    assessed = [level for level in levels.values() if level.level is not None]
    top = max((level.level for level in assessed if level.level is not None), default=Level.LOW)
    cap = dict(cap_rule.caps)[top]
    tops = [level.domain for level in assessed if level.level == top]
    where = ", ".join(tops) if tops and top > Level.LOW else "no domain above low"
    reason = f"highest level is {top.label} ({where}): at most {cap}"
    results.append(RuleResult(cap_rule.id, cap_rule.type, PASS, reason, tiers=(cap.value,), source=cap_rule.source))
    for tier in TIERS:
        if tier.more_open_than(cap):
            blocked[tier].append(f"{cap_rule.id}: {top.label} capability allows at most {cap}")

    def record(rule: Rule, outcome: str, reason: str, used: tuple[str, ...] = (), wanted: tuple[str, ...] = ()) -> None:
        """One tier rule's result; what it lacks is needed by its tiers, and a failure blocks them."""
        tiers = tuple(t.value for t in rule.tiers)
        results.append(RuleResult(rule.id, rule.type, outcome, reason, used, tiers, wanted, rule.source))
        for tier in rule.tiers:
            needs[tier].extend(wanted)
            if outcome == FAIL:
                blocked[tier].append(f"{rule.id}: {reason}")
        missing.extend(wanted)

    for rule in policy.rules:
        if rule.type == "requires_evidence":
            absent = [s for s in rule.subjects if not any(i.subject == s for i in profile.evidence)]
            if rule.waived_when and _holds(rule.waived_when, policy, facts, levels):
                record(
                    rule, NOT_APPLICABLE, f"waived ({rule.waived_when}) for: {', '.join(absent) or 'nothing missing'}"
                )
            elif absent:
                record(
                    rule,
                    INSUFFICIENT,
                    f"no evidence for {', '.join(absent)}",
                    wanted=tuple(f"evidence for {s}" for s in absent),
                )
            else:
                used = tuple(i.id for s in rule.subjects for i in profile.evidence if i.subject == s)
                record(rule, PASS, f"evidence present for {', '.join(rule.subjects)}", tuple(dict.fromkeys(used)))
        elif rule.type in ("requires_safeguard", "requires_tamper_resistance") and not _holds(
            rule.when, policy, facts, levels, waived
        ):
            record(rule, NOT_APPLICABLE, f"condition {rule.when} does not hold")
        elif rule.type == "requires_safeguard":
            assert rule.safeguard is not None and rule.metric is not None and rule.line is not None
            item = _latest(profile, rule.safeguard, rule.metric)
            if item is None:
                wanted = (f"{rule.safeguard} results ({rule.metric})",)
                record(rule, INSUFFICIENT, f"no {rule.metric} measured for {rule.safeguard}", wanted=wanted)
                continue
            assert item.low is not None and item.high is not None and item.value is not None
            riskier_higher = KNOWN_METRICS[rule.metric]
            # Judged on the conservative end: the safe side of the interval must clear the line.
            ok = item.high <= rule.line if riskier_higher else item.low >= rule.line
            bound = item.high if riskier_higher else item.low
            relation = "at most" if riskier_higher else "at least"
            text = f"{rule.metric} {item.value:.3f} (conservative bound {bound:.3f}) must be {relation} {rule.line}"
            record(rule, PASS if ok else FAIL, text, (item.id,))
        elif rule.type == "requires_tamper_resistance":
            tamper = next(
                (i for i in profile.evidence if i.subject == "tamper-resistance" and i.broken is not None), None
            )
            if tamper is None:
                wanted = ("tamper-resistance results over the declared attack grid",)
                record(rule, INSUFFICIENT, "no tamper-resistance results", wanted=wanted)
            elif tamper.broken:
                record(rule, FAIL, f"safeguards broke under the attack grid ({tamper.title})", (tamper.id,))
            else:
                record(rule, PASS, f"safeguards held under the attack grid ({tamper.title})", (tamper.id,))

    obligations: list[str] = []
    for rule in policy.rules_of("legal_flag"):
        assert rule.flop_above is not None
        if facts.training_flop is None:
            results.append(
                RuleResult(
                    rule.id,
                    rule.type,
                    INFO,
                    "training compute not declared: systemic-risk presumption not assessed",
                    missing=("training compute (FLOP)",),
                    source=rule.source,
                )
            )
            missing.append("training compute (FLOP)")
        elif facts.training_flop > rule.flop_above:
            obligations.extend(rule.obligations)
            results.append(
                RuleResult(
                    rule.id,
                    rule.type,
                    INFO,
                    f"training compute {facts.training_flop:.3g} FLOP > {rule.flop_above:.3g}: obligations apply",
                    source=rule.source,
                )
            )
        else:
            results.append(
                RuleResult(
                    rule.id,
                    rule.type,
                    NOT_APPLICABLE,
                    f"training compute {facts.training_flop:.3g} FLOP <= {rule.flop_above:.3g}",
                    source=rule.source,
                )
            )

    allowed = {tier.value: not blocked[tier] and not needs[tier] for tier in TIERS}
    allowed[Tier.SECURED.value] = True  # the floor: internal research only is always possible
    tier = next(t for t in TIERS if allowed[t.value])
    would_allow = {
        t.value: tuple(dict.fromkeys(needs[t])) for t in TIERS if t.more_open_than(tier) and needs[t] and not blocked[t]
    }
    return TierDecision(
        reference=profile.reference,
        profile_version=profile.profile_version,
        policy=policy.name,
        policy_version=policy.version,
        policy_digest=policy.digest,
        decided_at=now,
        tier=tier,
        levels=tuple(levels[d] for d in DOMAINS),
        results=tuple(results),
        allowed=allowed,
        missing=tuple(dict.fromkeys(missing)),
        would_allow=would_allow,
        obligations=tuple(obligations),
        facts=facts,
    )


# --- explaining a change -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyChange:
    kind: str  # added | removed | changed | metadata
    rule: str
    detail: str


def _rule_fields(rule: Rule) -> dict[str, Any]:
    out = {}
    for name in Rule.__slots__:  # type: ignore[attr-defined]
        value = getattr(rule, name)
        if value not in (None, (), ""):
            out[name] = value.label if isinstance(value, Level) else value
    return out


def diff_policies(old: Policy, new: Policy) -> list[PolicyChange]:
    """What changed between two policies, rule by rule, in words."""
    changes: list[PolicyChange] = []
    for key in ("name", "version", "description"):
        if getattr(old, key) != getattr(new, key):
            changes.append(PolicyChange("metadata", key, f"{getattr(old, key)!r} -> {getattr(new, key)!r}"))
    before = {rule.id: rule for rule in old.rules}
    after = {rule.id: rule for rule in new.rules}
    for rule_id in before.keys() - after.keys():
        changes.append(PolicyChange("removed", rule_id, f"{before[rule_id].type} removed"))
    for rule_id in after.keys() - before.keys():
        changes.append(PolicyChange("added", rule_id, f"{after[rule_id].type} added"))
    for rule_id in before.keys() & after.keys():
        a, b = _rule_fields(before[rule_id]), _rule_fields(after[rule_id])
        for name in sorted(a.keys() | b.keys()):
            if a.get(name) != b.get(name):
                changes.append(
                    PolicyChange("changed", rule_id, f"{name}: {_show(a.get(name))} -> {_show(b.get(name))}")
                )
    if old.conditions != new.conditions:
        for name in sorted(old.conditions.keys() | new.conditions.keys()):
            if old.conditions.get(name) != new.conditions.get(name):
                changes.append(
                    PolicyChange(
                        "changed",
                        f"condition {name}",
                        f"{_show(old.conditions.get(name))} -> {_show(new.conditions.get(name))}",
                    )
                )
    if old.reference_models != new.reference_models:
        changes.append(
            PolicyChange(
                "changed",
                "reference_open_models",
                f"{len(old.reference_models)} -> {len(new.reference_models)} entries (or values changed)",
            )
        )
    order = {"metadata": 0, "removed": 1, "added": 2, "changed": 3}
    return sorted(changes, key=lambda c: (order[c.kind], c.rule, c.detail))


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, Condition):
        return f"{value.kind}: {_show(value.value)}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, Level):
        return value.label
    if isinstance(value, Tier):
        return value.value
    return str(value)


def policy_fields() -> dict[str, Any]:
    """The policy vocabulary, for docs and error messages."""
    return {
        "rule_types": list(RULE_TYPES),
        "conditions": list(CONDITION_KINDS),
        "metrics": list(KNOWN_METRICS),
        "subjects": list(SUBJECTS),
    }
