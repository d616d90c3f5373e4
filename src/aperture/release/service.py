"""Use cases of release governance: policies, decisions, the release board, stages, transparency.

Every change happens in one transaction with its audit event. A refused request (a vote by a
non-member, a second vote, an early opening, a stale decision) changes nothing but the log: the
refusal is recorded there, then raised.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any

from aperture.access.domain import SYSTEM, Action, Caller, Role, SecurityLevel
from aperture.access.refusals import ask, ask_instance
from aperture.access.service import AccessService
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock, isoformat
from aperture.core.db import Database
from aperture.core.errors import ApertureError, Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from aperture.core.ids import new_id
from aperture.registry.domain import ModelVersion, parse_reference
from aperture.registry.service import RegistryService, version_asset
from aperture.release import store
from aperture.release.domain import Tier, controls
from aperture.release.policy import (
    EvidenceItem,
    Facts,
    Level,
    Policy,
    PolicyChange,
    ProfileView,
    TierDecision,
    decide,
    diff_policies,
    parse_policy,
)
from aperture.release.reports import FORMATS, ReportPrinter, render
from aperture.risk.service import RiskService
from aperture.vault.keys import verify_ed25519

if TYPE_CHECKING:
    from aperture.settings import Settings

MAX_TEXT = 4000
# What a signed decision and an adopted policy sign: a domain-separated SHA-256 of their bytes.
DECISION_CONTEXT = b"aperture-release-decision:v1:"
POLICY_CONTEXT = b"aperture-release-policy:v1:"


@dataclass(frozen=True, slots=True)
class BoardRules:
    quorum: int
    open_quorum: int
    cooling_off: timedelta
    stage_grace: timedelta


def board_rules(settings: Settings) -> BoardRules:
    return BoardRules(
        quorum=settings.release_quorum,
        open_quorum=max(settings.release_open_quorum, settings.release_quorum),
        cooling_off=timedelta(days=settings.release_cooling_off_days),
        stage_grace=timedelta(days=settings.release_stage_grace_days),
    )


@dataclass(frozen=True, slots=True)
class PlannedStage:
    """A later step of a staged release: a tier, when it comes due, and its condition."""

    tier: Tier
    after_days: float
    condition: str


def parse_stage(text: str) -> PlannedStage:
    """`TIER@DAYS[:CONDITION]`, e.g. `licensed@180:no serious incident`."""
    head, _, condition = text.partition(":")
    tier_text, at, days_text = head.partition("@")
    if not at:
        raise InvalidInput(
            f"stage {text!r} has no date", hint="write TIER@DAYS[:CONDITION], e.g. licensed@180:no incident"
        )
    try:
        tier = Tier.parse(tier_text)
        days = float(days_text)
    except ValueError as error:
        raise InvalidInput(f"stage {text!r}: {error}", hint="write TIER@DAYS[:CONDITION], e.g. open@1825") from None
    if days <= 0:
        raise InvalidInput(f"stage {text!r} is not in the future", hint="DAYS counts from the decision and must be > 0")
    return PlannedStage(tier, days, condition.strip() or "a fresh assessment and a board vote")


def _text(value: str, what: str, hint: str) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise InvalidInput(f"{what} is empty", hint=hint)
    if len(cleaned) > MAX_TEXT:
        raise InvalidInput(
            f"{what} is longer than {MAX_TEXT} characters", hint="shorten it; attach documents as evidence"
        )
    return cleaned


def _signable(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def evidence_item(evidence: dict[str, Any]) -> EvidenceItem | None:
    """A risk profile's evidence entry as the policy sees it."""
    subject = evidence.get("domain") or evidence.get("safeguard")
    if subject is None:
        return None
    headline = evidence.get("headline") or {}
    summary = evidence.get("summary") or {}
    level = summary.get("level")
    broken = None
    if evidence.get("kind") == "tamper":
        suites = summary.get("suites") or {}
        broken = any(bool(item.get("broken")) for item in suites.values())
    low, high = headline.get("ci95", [None, None]) if headline else (None, None)
    return EvidenceItem(
        id=evidence["id"],
        kind=evidence["kind"],
        subject=subject,
        metric=headline.get("metric"),
        value=headline.get("value"),
        low=low,
        high=high,
        n=headline.get("n"),
        suite=evidence.get("suite"),
        level=Level.parse(level, "finding") if level else None,
        broken=broken,
        title=evidence.get("title", ""),
    )


class ReleaseService:
    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        clock: Clock,
        registry: RegistryService,
        risk: RiskService,
        access: AccessService,
        rules: BoardRules,
        printer: ReportPrinter | None = None,
    ) -> None:
        self._database = database
        self._audit = audit
        self._clock = clock
        self._registry = registry
        self._risk = risk
        self._access = access
        self.rules = rules
        self._printer = printer

    # --- tiers ------------------------------------------------------------------------------

    def tier_of(self, name: str, version: str, caller: Caller = SYSTEM) -> Tier | None:
        """The tier a version is released under now; None while no decision has taken effect
        (callers must then fail closed: not hosted, not licensed, not open)."""
        record = self._registry.get_version(name, version, caller)
        with self._database.read() as connection:
            return store.effective_tier(connection, record.id)

    def tiers_in_effect(self) -> dict[str, Tier]:
        """Every version's tier in effect, by version id (read without looking any version up)."""
        with self._database.read() as connection:
            return {row["model_version_id"]: Tier(row["tier"]) for row in store.tier_rows(connection)}

    def take_effect(self, version: ModelVersion, tier: Tier, decision_id: str, *, actor: str) -> None:
        """Carry out a decision: the version is released under `tier` from now on (audited)."""
        with self._database.transaction() as connection:
            self._take_effect(connection, version, tier, decision_id, actor)

    def _take_effect(self, connection: Any, version: ModelVersion, tier: Tier, decision_id: str, actor: str) -> None:
        now = self._clock.now()
        previous = store.effective_proposal(connection, version.id)
        if previous is not None and previous["id"] != decision_id:
            store.update_proposal(connection, previous["id"], status="superseded", status_reason=f"by {decision_id}")
        store.put_tier(connection, version.id, tier, decision_id, now)
        self._audit.append(
            connection,
            actor=actor,
            action="release.take_effect",
            resource=self._registry.log_name(version),
            details={"tier": tier.value, "decision_id": decision_id},
            upper_tier=self._upper(version),
        )

    # --- policies ---------------------------------------------------------------------------

    @staticmethod
    def shipped_policy_text() -> str:
        return resources.files("aperture.release").joinpath("policies/default.yaml").read_text("utf-8")

    def active_policy(self) -> Policy:
        """The adopted policy in force (the shipped default until an operator adopts one)."""
        with self._database.read() as connection:
            row = store.active_policy(connection)
        if row is None:
            return parse_policy(self.shipped_policy_text(), "shipped default policy")
        return parse_policy(row["text"], f"adopted policy {row['name']} v{row['version']}")

    def adopt_policy(self, caller: Caller, text: str, reason: str) -> dict[str, Any]:
        """Validate, sign with the instance key and put a policy in force (audited)."""
        ask_instance(
            self._access,
            caller,
            Action.ADOPT_RELEASE_POLICY,
            message="adopting a release policy needs the role administrator or chief_scientist",
            hint="ask someone who has it",
        )
        reason = _text(reason, "the reason", "say why the policy changes (--reason)")
        policy = parse_policy(text, "the new policy")
        signer = self._audit.signer()
        signature = base64.b64encode(signer.sign(POLICY_CONTEXT + policy.digest.encode())).decode()
        with self._database.transaction() as connection:
            current = store.active_policy(connection)
            if current is not None and current["digest"] == policy.digest:
                raise Conflict(f"{policy.label} is already in force", hint="change the policy and raise its version")
            if store.policy_by_digest(connection, policy.digest) is not None:
                raise Conflict(
                    f"this exact document ({policy.digest[:12]}) was adopted before",
                    hint="raise `version` when you bring a policy back, so decisions can tell them apart",
                )
            if current is not None and current["name"] == policy.name and current["version"] == policy.version:
                raise InvalidInput(
                    f"{policy.label} is in force with different content",
                    hint="raise `version` on every change to a policy",
                )
            row = {
                "digest": policy.digest,
                "name": policy.name,
                "version": policy.version,
                "text": text,
                "adopted_at": self._clock.now(),
                "adopted_by": caller.actor,
                "reason": reason,
                "key_id": signer.key_id,
                "signature": signature,
            }
            store.insert_policy(connection, row)
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.policy.adopted",
                resource=f"release-policy:{policy.name}",
                details={"version": policy.version, "digest": policy.digest, "reason": reason},
            )
        return self._policy_row(row | {"active": True})

    def _policy_row(self, row: dict[str, Any]) -> dict[str, Any]:
        verified = verify_ed25519(
            self._audit.signer().public_key_pem,
            base64.b64decode(row["signature"]),
            POLICY_CONTEXT + row["digest"].encode(),
        )
        return {
            "name": row["name"],
            "version": row["version"],
            "digest": row["digest"],
            "adopted_at": row["adopted_at"].isoformat(),
            "adopted_by": row["adopted_by"],
            "reason": row["reason"],
            "key_id": row["key_id"],
            "signature": row["signature"],
            "signature_valid": verified,
            "active": bool(row["active"]),
        }

    def policies(self) -> list[dict[str, Any]]:
        with self._database.read() as connection:
            rows = store.list_policies(connection)
        return [self._policy_row(row) for row in rows]

    def policy_text(self, digest: str | None = None) -> str:
        with self._database.read() as connection:
            row = store.policy_by_digest(connection, digest) if digest else store.active_policy(connection)
        if row is None:
            if digest:
                raise NotFound(f"no adopted policy {digest}", hint="see `aperture policy list`")
            return self.shipped_policy_text()
        return str(row["text"])

    def policy_document(self, digest: str | None = None) -> dict[str, Any]:
        """The policy in force (or an earlier one): its name, version, sha256 and verbatim text."""
        text = self.policy_text(digest)
        policy = parse_policy(text, "the stored policy")
        return {"name": policy.name, "version": policy.version, "digest": policy.digest, "text": text}

    @staticmethod
    def diff(old_text: str, new_text: str) -> list[PolicyChange]:
        return diff_policies(parse_policy(old_text, "the old policy"), parse_policy(new_text, "the new policy"))

    # --- decisions --------------------------------------------------------------------------

    def facts_for(self, version: ModelVersion, comparable_open_model: str | None = None) -> Facts:
        return Facts(
            parameters=version.parameter_count or None,
            training_flop=float(version.facts.training_flop) if version.facts.training_flop is not None else None,
            modalities=tuple(m.value for m in version.facts.modalities),
            intended_use=version.facts.intended_use,
            comparable_open_model=comparable_open_model,
        )

    def profile_view(self, reference: str, caller: Caller = SYSTEM) -> ProfileView:
        payload = self._risk.profile(reference, caller=caller)
        items = [item for item in (evidence_item(e) for e in payload["evidence"]) if item is not None]
        return ProfileView(payload["model"], int(payload["profile_version"]), tuple(items))

    def evaluate(self, caller: Caller, reference: str, *, comparable_open_model: str | None = None) -> TierDecision:
        """What the policy in force decides for a version now (changes nothing); a version the
        caller may not see reads like one that does not exist."""
        version = self._registry.find_version(reference, caller)
        return decide(
            self.profile_view(version.reference, caller),
            self.facts_for(version, comparable_open_model),
            self.active_policy(),
            self._clock.now(),
        )

    def board(self) -> list[str]:
        """The release board: every enabled person with the role `release_board_member`."""
        return sorted(
            p.name for p in self._access.list_principals() if Role.RELEASE_BOARD_MEMBER in p.roles and not p.disabled
        )

    def voters(self, version: ModelVersion) -> list[str]:
        """The board members who may decide this version's release: the board role AND clearance
        for the version (the access service decides, as it would for each member's own vote)."""
        asset = version_asset(version.id)
        by_name = {p.name: p for p in self._access.list_principals()}
        return [
            name
            for name in self.board()
            if self._access.decide(Caller(name, by_name[name].roles), Action.VOTE_RELEASE, asset).allowed
        ]

    # --- who may do what --------------------------------------------------------------------

    def _upper(self, version: ModelVersion) -> bool:
        """Whether events about the version concern the upper tier (SL3 and above; unclassified counts)."""
        found = self._registry.classification(version)
        return found is None or found.level.upper_tier

    def _ask(
        self,
        caller: Caller,
        action: Action,
        version: ModelVersion,
        *,
        missing: NotFound,
        message: str,
        hint: str,
        proposer: bool | None = None,
    ) -> None:
        """The access service decides; a version the caller may not see raises `missing`."""
        facts = {} if proposer is None else {"proposer": proposer}
        ask(
            self._access,
            caller,
            action,
            version_asset(version.id),
            missing=missing,
            message=message,
            hint=hint,
            facts=facts,
        )

    def _load(self, proposal_id: str) -> tuple[dict[str, Any], ModelVersion]:
        """A proposal and its version, looked up without deciding anything: each use case then asks
        the access service for its own action, which answers `_no_proposal` when the caller may not
        see the version (so the answer never depends on what exists)."""
        with self._database.read() as connection:
            proposal = store.load_proposal(connection, proposal_id)
        if proposal is None:
            raise _no_proposal(proposal_id)
        return proposal, self._listed(proposal["model_version_id"], proposal["reference"])

    def _listed(self, version_id: str, reference: str) -> ModelVersion:
        """A version found as a listing finds it: nothing decided on the caller's behalf, and no
        canary touched by the service itself (the caller's own decision is what its watch hears)."""
        name = reference.partition(":")[0]
        found = next((v for v in self._registry.get_model(name).versions if v.id == version_id), None)
        if found is None:
            raise NotFound(f"no model version with id {version_id}", hint="`aperture models list` shows the models")
        return found

    def propose(
        self,
        caller: Caller,
        reference: str,
        tier: Tier,
        rationale: str,
        *,
        stages: Sequence[PlannedStage] = (),
        comparable_open_model: str | None = None,
        stage_id: str | None = None,
    ) -> dict[str, Any]:
        """A programme director cleared for the version proposes a tier; the board votes on it."""
        version = self._registry.find_version(reference, caller)
        self._ask(
            caller,
            Action.PROPOSE_RELEASE,
            version,
            missing=_no_version(reference),
            message="proposing a release needs the role programme_director",
            hint="ask a programme director cleared for this version",
        )
        rationale = _text(rationale, "the rationale", "say why this tier (--rationale)")
        decision = self.evaluate(caller, version.reference, comparable_open_model=comparable_open_model)
        if tier.more_open_than(decision.tier):
            needs = decision.would_allow.get(tier.value)
            hint = (
                f"to be {tier}, it needs: {'; '.join(needs)}"
                if needs
                else "the policy's rules block it: see `aperture release decide` for the reasons"
            )
            self._refuse(caller, version, "propose", f"{tier} is more open than the policy allows ({decision.tier})")
            raise Forbidden(f"the policy allows {version.reference} at most {decision.tier}, not {tier}", hint=hint)
        classification = self._registry.classification(version)
        stored = classification.level if classification is not None else SecurityLevel.SL5
        minimum = controls(tier).minimum_security_level
        if stored < minimum:
            raise InvalidInput(
                f"{tier} needs the weights stored at {minimum.name} or above; {version.reference} is at {stored.name}",
                hint=f"re-register the weights at --level {minimum.name} (sealed storage) before proposing {tier}",
            )
        quorum = self.rules.open_quorum if tier is Tier.OPEN else self.rules.quorum
        eligible = [m for m in self.voters(version) if m != caller.principal]
        if len(eligible) < quorum:
            raise Conflict(
                f"the board has {len(eligible)} member(s) who may decide this version; {tier} needs {quorum} approvals",
                hint="board members need the role release_board_member and clearance for the version "
                "(`aperture access add ... --role release_board_member`)",
            )
        proposal_id = new_id()
        now = self._clock.now()
        upper = self._upper(version)
        with self._database.transaction() as connection:
            for existing in store.list_proposals(connection, version.id):
                if existing["status"] in ("voting", "cooling-off"):
                    raise Conflict(
                        f"{version.reference} already has a proposal {existing['status']} ({existing['id']})",
                        hint="wait for it, or withdraw it with `aperture release withdraw`",
                    )
            if stage_id is not None:
                stage = store.load_stage(connection, stage_id)
                if stage is None or stage["model_version_id"] != version.id:
                    raise NotFound(
                        f"no stage {stage_id} for {version.reference}", hint="see `aperture release timeline`"
                    )
                if stage["status"] != "planned":
                    raise Conflict(f"stage {stage_id} is {stage['status']}", hint="see `aperture release timeline`")
                if _aware(stage["due_at"]) > now:
                    raise Conflict(
                        f"stage {stage_id} ({stage['tier']}) is not due until {isoformat(_aware(stage['due_at']))}",
                        hint="a stage is decided when its date comes",
                    )
                if Tier(stage["tier"]) is not tier:
                    raise InvalidInput(f"stage {stage_id} plans {stage['tier']}, not {tier}", hint="propose its tier")
                effective = store.effective_proposal(connection, version.id)
                if effective is not None and effective["profile_version"] >= decision.profile_version:
                    raise Conflict(
                        "a stage needs a fresh assessment: the risk profile has not changed since the last decision "
                        f"(profile version {decision.profile_version})",
                        hint="run the assessment suites again (`aperture assess run`) and propose again",
                    )
                store.update_stage(connection, stage_id, status="proposed", proposal_id=proposal_id)
            policy = self.active_policy()
            store.insert_proposal(
                connection,
                {
                    "id": proposal_id,
                    "model_version_id": version.id,
                    "reference": version.reference,
                    "tier": tier.value,
                    "rationale": rationale,
                    "proposer": caller.principal,
                    "created_at": now,
                    "status": "voting",
                    "quorum": quorum,
                    "policy_digest": policy.digest,
                    "profile_version": decision.profile_version,
                    "decision": json.dumps(decision.to_dict()),
                    "stage_id": stage_id,
                },
            )
            for position, planned in enumerate(stages, start=1):
                store.insert_stage(
                    connection,
                    {
                        "id": new_id(),
                        "model_version_id": version.id,
                        "plan_proposal_id": proposal_id,
                        "position": position,
                        "tier": planned.tier.value,
                        "due_at": now + timedelta(days=planned.after_days),
                        "condition": planned.condition,
                        "status": "planned",
                    },
                )
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.proposed",
                resource=self._registry.log_name(version),
                details={
                    "proposal": proposal_id,
                    "tier": tier.value,
                    "policy_tier": decision.tier.value,
                    "policy": policy.label,
                    "profile_version": decision.profile_version,
                    "stages": [f"{s.tier}@{s.after_days:g}" for s in stages],
                },
                upper_tier=upper,
            )
        return self._proposal_by_id(proposal_id)

    def declare_conflict(self, caller: Caller, proposal_id: str, reason: str) -> dict[str, Any]:
        """A board member declares a conflict of interest: excluded from the vote, recorded and published."""
        reason = _text(reason, "the conflict's description", "say what the conflict is (--reason)")
        # Every access decision before the transaction: deciding on an upper-tier version is itself
        # audited, and on SQLite that write would wait on this transaction's lock.
        proposal, version = self._load(proposal_id)
        self._require_voter(caller, proposal, version)
        with self._database.transaction() as connection:
            proposal = self._open_proposal(connection, proposal_id, lock=True)
            members = {row["member"] for row in store.votes(connection, proposal_id)}
            if caller.principal in members:
                raise Conflict("you have already voted on this proposal", hint="a conflict is declared before voting")
            if any(row["member"] == caller.principal for row in store.conflicts(connection, proposal_id)):
                raise Conflict("you have already declared a conflict on this proposal", hint="nothing to do")
            store.insert_conflict(connection, proposal_id, caller.principal, reason, self._clock.now())
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.conflict.declared",
                resource=f"release-proposal:{proposal_id}",
                details={"reason": reason},
                upper_tier=self._upper(version),
            )
            self._settle(connection, caller, proposal, version)
        return self._proposal_by_id(proposal_id)

    def vote(self, caller: Caller, proposal_id: str, approve: bool, reason: str) -> dict[str, Any]:
        """One vote per eligible board member cleared for the version, with a written reason; the
        decision is reached at quorum."""
        reason = _text(reason, "the vote's reason", "every vote carries a written reason (--reason)")
        proposal, version = self._load(proposal_id)  # before the transaction (see declare_conflict)
        refusal = self._vote_refusal(caller, proposal, version)
        if refusal is not None:
            self._refuse_proposal(caller, proposal, version, "vote", refusal.message)
            raise refusal
        self._check_fresh(caller, proposal, version)
        with self._database.transaction() as connection:
            proposal = self._open_proposal(connection, proposal_id, lock=True)
            if any(row["member"] == caller.principal for row in store.votes(connection, proposal_id)):
                raise Conflict("you have already voted on this proposal", hint="a vote cannot be changed")
            store.insert_vote(connection, proposal_id, caller.principal, approve, reason, self._clock.now())
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.voted",
                resource=f"release-proposal:{proposal_id}",
                details={"approve": approve, "reason": reason},
                upper_tier=self._upper(version),
            )
            self._settle(connection, caller, proposal, version)
        return self._proposal_by_id(proposal_id)

    def _vote_refusal(self, caller: Caller, proposal: dict[str, Any], version: ModelVersion) -> ApertureError | None:
        """Why the caller may not vote, for the log; a proposal not open for votes is simply a conflict."""
        try:
            self._require_voter(caller, proposal, version)
        except (Forbidden, Unauthenticated) as error:
            return error
        if proposal["status"] != "voting":
            raise _not_open(proposal)
        with self._database.read() as connection:
            if any(row["member"] == caller.principal for row in store.conflicts(connection, proposal["id"])):
                return Forbidden(
                    f"{caller.principal} declared a conflict of interest on this proposal",
                    hint="conflicted members are excluded from the vote",
                )
            if any(row["member"] == caller.principal for row in store.votes(connection, proposal["id"])):
                return Conflict("you have already voted on this proposal", hint="a vote cannot be changed")
        return None

    def _require_voter(self, caller: Caller, proposal: dict[str, Any], version: ModelVersion) -> None:
        """The board role and clearance for the version (the access service), and not the proposer."""
        self._ask(
            caller,
            Action.VOTE_RELEASE,
            version,
            missing=_no_proposal(proposal["id"]),
            message=f"{caller.principal} is not a member of the release board",
            hint="only release_board_member people vote",
        )
        if caller.principal == proposal["proposer"]:
            raise Forbidden("the proposer cannot vote on their own proposal", hint="conflicts of interest are excluded")

    def _settle(self, connection: Any, caller: Caller, proposal: dict[str, Any], version: ModelVersion) -> None:
        """Decide when the approvals reach the quorum, or reject when they no longer can."""
        votes = store.votes(connection, proposal["id"])
        conflicted = {row["member"] for row in store.conflicts(connection, proposal["id"])}
        eligible = [m for m in self.voters(version) if m != proposal["proposer"] and m not in conflicted]
        approvals = [v for v in votes if v["approve"]]
        undecided = [m for m in eligible if m not in {v["member"] for v in votes}]
        quorum = proposal["quorum"]
        if len(approvals) >= quorum:
            self._decide(connection, caller, proposal, version, votes, sorted(conflicted))
        elif len(approvals) + len(undecided) < quorum:
            store.update_proposal(
                connection,
                proposal["id"],
                status="rejected",
                status_reason=f"{len(approvals)} approval(s); {quorum} needed and no longer reachable",
                decided_at=self._clock.now(),
            )
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.rejected",
                resource=f"release-proposal:{proposal['id']}",
                details={"approvals": len(approvals), "quorum": quorum},
                upper_tier=self._upper(version),
            )

    def _decide(
        self,
        connection: Any,
        caller: Caller,
        proposal: dict[str, Any],
        version: ModelVersion,
        votes: list[dict[str, Any]],
        conflicted: list[str],
    ) -> None:
        now = self._clock.now()
        tier = Tier(proposal["tier"])
        cooling = tier is Tier.OPEN and self.rules.cooling_off > timedelta(0)
        record = {
            "proposal": proposal["id"],
            "model": proposal["reference"],
            "model_version_id": proposal["model_version_id"],
            "manifest_digest": version.manifest_digest,
            "tier": tier.value,
            "rationale": proposal["rationale"],
            "proposer": proposal["proposer"],
            "policy_decision": proposal["decision"],
            "votes": [
                {
                    "member": v["member"],
                    "approve": bool(v["approve"]),
                    "reason": v["reason"],
                    "at": isoformat(_aware(v["at"])),
                }
                for v in votes
            ],
            "dissent": [{"member": v["member"], "reason": v["reason"]} for v in votes if not v["approve"]],
            "conflicts_declared": conflicted,
            "quorum": proposal["quorum"],
            "decided_at": isoformat(now),
            "irreversible": not controls(tier).reversible,
            "cooling_off_until": isoformat(now + self.rules.cooling_off) if cooling else None,
        }
        signer = self._audit.signer()
        payload = _signable(record)
        signature = base64.b64encode(signer.sign(DECISION_CONTEXT + hashlib.sha256(payload).digest())).decode()
        store.update_proposal(
            connection,
            proposal["id"],
            status="cooling-off" if cooling else "effective",
            decided_at=now,
            cooling_off_until=now + self.rules.cooling_off if cooling else None,
            effective_at=None if cooling else now,
            record=json.dumps(record),
            signature=signature,
        )
        self._audit.append(
            connection,
            actor=caller.actor,
            action="release.decided",
            resource=self._registry.log_name(version),
            details={
                "proposal": proposal["id"],
                "tier": tier.value,
                "record_sha256": hashlib.sha256(payload).hexdigest(),
                "key_id": signer.key_id,
                "dissent": len(record["dissent"]),
                "cooling_off_until": record["cooling_off_until"],
            },
            upper_tier=self._upper(version),
        )
        if proposal["stage_id"]:
            store.update_stage(connection, proposal["stage_id"], status="done")
        if not cooling:
            self._take_effect(connection, version, tier, proposal["id"], caller.actor)

    def challenge(self, caller: Caller, proposal_id: str, reason: str) -> dict[str, Any]:
        """During the cooling-off period anyone of the institution cleared for the version may
        challenge an opening. A challenged opening is not carried out; it needs a new proposal and vote."""
        reason = _text(reason, "the challenge", "say what is wrong with the decision (--reason)")
        proposal, version = self._load(proposal_id)
        self._ask(
            caller,
            Action.CHALLENGE_RELEASE,
            version,
            missing=_no_proposal(proposal_id),
            message="challenging a decision needs a registered member of the institution",
            hint="send the API key of a registered person",
        )
        with self._database.transaction() as connection:
            proposal = store.load_proposal(connection, proposal_id, lock=True) or proposal
            if proposal["status"] != "cooling-off":
                raise Conflict(
                    f"proposal {proposal_id} is {proposal['status']}: "
                    "only decisions in their cooling-off period can be challenged",
                    hint="reversible decisions are changed by a new proposal",
                )
            store.insert_challenge(
                connection,
                {
                    "id": new_id(),
                    "proposal_id": proposal_id,
                    "by": caller.principal,
                    "reason": reason,
                    "at": self._clock.now(),
                },
            )
            store.update_proposal(connection, proposal_id, status="challenged", status_reason=reason)
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.challenged",
                resource=f"release-proposal:{proposal_id}",
                details={"reason": reason},
                upper_tier=self._upper(version),
            )
        return self._proposal_by_id(proposal_id)

    def carry_out(self, caller: Caller, proposal_id: str) -> dict[str, Any]:
        """Open the weights once the cooling-off period has passed unchallenged and the evidence is unchanged."""
        proposal, version = self._load(proposal_id)
        self._ask(
            caller,
            Action.CARRY_OUT_RELEASE,
            version,
            missing=_no_proposal(proposal_id),
            message="carrying out a release decision needs the role programme_director or administrator",
            hint="ask someone who has it",
        )
        if proposal["status"] != "cooling-off":
            raise Conflict(
                f"proposal {proposal_id} is {proposal['status']}, not waiting to be carried out",
                hint="see `aperture release show`",
            )
        until = _aware(proposal["cooling_off_until"])
        if self._clock.now() < until:
            message = f"the cooling-off period runs until {isoformat(until)}: the weights cannot be opened before"
            self._refuse_proposal(caller, proposal, version, "carry-out", message)
            raise Conflict(message, hint="opening weights is irreversible; wait, or answer challenges meanwhile")
        self._check_fresh(caller, proposal, version)
        with self._database.transaction() as connection:
            store.update_proposal(connection, proposal_id, status="effective", effective_at=self._clock.now())
            self._take_effect(connection, version, Tier(proposal["tier"]), proposal_id, caller.actor)
        return self._proposal_by_id(proposal_id)

    def withdraw(self, caller: Caller, proposal_id: str, reason: str) -> dict[str, Any]:
        reason = _text(reason, "the reason", "say why (--reason)")
        proposal, version = self._load(proposal_id)
        self._ask(
            caller,
            Action.WITHDRAW_RELEASE,
            version,
            missing=_no_proposal(proposal_id),
            message="only the proposer (or an administrator) may withdraw a proposal",
            hint="ask the proposer",
            proposer=caller.principal == proposal["proposer"],
        )
        with self._database.transaction() as connection:
            proposal = self._open_proposal(connection, proposal_id, lock=True)
            store.update_proposal(connection, proposal_id, status="withdrawn", status_reason=reason)
            if proposal["stage_id"]:
                store.update_stage(connection, proposal["stage_id"], status="planned", proposal_id=None)
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.withdrawn",
                resource=f"release-proposal:{proposal_id}",
                details={"reason": reason},
                upper_tier=self._upper(version),
            )
        return self._proposal_by_id(proposal_id)

    def _check_fresh(self, caller: Caller, proposal: dict[str, Any], version: ModelVersion) -> None:
        """A decision stands on the evidence and policy it was proposed with; if either changed, it is stale."""
        current = self.profile_view(proposal["reference"]).profile_version
        policy = self.active_policy()
        problems = []
        if current != proposal["profile_version"]:
            problems.append(f"the risk profile changed (version {proposal['profile_version']} -> {current})")
        if policy.digest != proposal["policy_digest"]:
            problems.append(f"the policy changed (now {policy.label})")
        if not problems:
            return
        message = f"proposal {proposal['id']} is stale: {'; '.join(problems)}"
        with self._database.transaction() as connection:
            store.update_proposal(connection, proposal["id"], status="stale", status_reason="; ".join(problems))
            if proposal["stage_id"]:
                store.update_stage(connection, proposal["stage_id"], status="planned", proposal_id=None)
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.stale",
                resource=f"release-proposal:{proposal['id']}",
                details={"problems": problems},
                upper_tier=self._upper(version),
            )
        raise Conflict(message, hint="re-decide: `aperture release propose` again on the current evidence and policy")

    def _open_proposal(self, connection: Any, proposal_id: str, *, lock: bool = False) -> dict[str, Any]:
        proposal = store.load_proposal(connection, proposal_id, lock=lock)
        if proposal is None:
            raise _no_proposal(proposal_id)
        if proposal["status"] != "voting":
            raise _not_open(proposal)
        return proposal

    def _refuse(self, caller: Caller, version: ModelVersion, what: str, reason: str) -> None:
        with self._database.transaction() as connection:
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.refused",
                resource=self._registry.log_name(version),
                details={"request": what, "reason": reason},
                upper_tier=self._upper(version),
            )

    def _refuse_proposal(
        self, caller: Caller, proposal: dict[str, Any], version: ModelVersion, what: str, reason: str
    ) -> None:
        with self._database.transaction() as connection:
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.refused",
                resource=f"release-proposal:{proposal['id']}",
                details={"request": what, "reason": reason},
                upper_tier=self._upper(version),
            )

    # --- reading ----------------------------------------------------------------------------

    def proposal(self, caller: Caller, proposal_id: str) -> dict[str, Any]:
        """A proposal with its rationale, votes, conflicts and signed decision, for a caller cleared
        for its version; for anyone else it reads exactly like a proposal that does not exist."""
        _, version = self._load(proposal_id)
        self._ask(
            caller,
            Action.VIEW_RELEASE,
            version,
            missing=_no_proposal(proposal_id),
            message="release proposals are for the institution's registered people",
            hint="send the API key of a registered person cleared for the version",
        )
        return self._proposal_by_id(proposal_id)

    def _proposal_by_id(self, proposal_id: str) -> dict[str, Any]:
        with self._database.read() as connection:
            proposal = store.load_proposal(connection, proposal_id)
            if proposal is None:
                raise _no_proposal(proposal_id)
            votes = store.votes(connection, proposal_id)
            conflicts = store.conflicts(connection, proposal_id)
            challenges = store.challenges(connection, proposal_id)
            planned = [
                s
                for s in store.stages(connection, proposal["model_version_id"])
                if s["plan_proposal_id"] == proposal_id
            ]
        return self._proposal_out(proposal, votes, conflicts, challenges, planned)

    def _proposal_out(
        self,
        proposal: dict[str, Any],
        votes: list[dict[str, Any]],
        conflicts: list[dict[str, Any]],
        challenges: list[dict[str, Any]],
        planned: list[dict[str, Any]],
    ) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return isoformat(_aware(value)) if value is not None else None

        return {
            "id": proposal["id"],
            "model": proposal["reference"],
            "tier": proposal["tier"],
            "status": proposal["status"],
            "status_reason": proposal["status_reason"],
            "rationale": proposal["rationale"],
            "proposer": proposal["proposer"],
            "created_at": when(proposal["created_at"]),
            "quorum": proposal["quorum"],
            "policy_digest": proposal["policy_digest"],
            "profile_version": proposal["profile_version"],
            "decision": proposal["decision"],
            "votes": [
                {"member": v["member"], "approve": bool(v["approve"]), "reason": v["reason"], "at": when(v["at"])}
                for v in votes
            ],
            "dissent": [{"member": v["member"], "reason": v["reason"]} for v in votes if not v["approve"]],
            "conflicts": [{"member": c["member"], "reason": c["reason"], "at": when(c["at"])} for c in conflicts],
            "challenges": [{"by": c["by"], "reason": c["reason"], "at": when(c["at"])} for c in challenges],
            "stages": [self._stage_out(s) for s in planned],
            "decided_at": when(proposal["decided_at"]),
            "cooling_off_until": when(proposal["cooling_off_until"]),
            "effective_at": when(proposal["effective_at"]),
            "record": proposal["record"],
            "signature": proposal["signature"],
        }

    def proposals(self, caller: Caller, reference: str | None = None) -> list[dict[str, Any]]:
        """Proposals newest first: only those on versions the caller may see proposals of (for
        anyone else they are absent, not counted)."""
        return [
            {key: row[key] for key in ("id", "reference", "tier", "status", "proposer")}
            | {"created_at": isoformat(_aware(row["created_at"]))}
            for row in self._visible_proposals(caller, reference)
        ]

    def _visible_proposals(self, caller: Caller, reference: str | None = None) -> list[dict[str, Any]]:
        version_id = self._registry.find_version(reference, caller).id if reference else None
        with self._database.read() as connection:
            rows = store.list_proposals(connection, version_id)
        visible = self._release_visible(caller, {row["model_version_id"] for row in rows})
        return [row for row in rows if row["model_version_id"] in visible]

    def _release_visible(self, caller: Caller, version_ids: set[str]) -> set[str]:
        """The versions among `version_ids` whose proposals the caller may see (decided as a listing)."""
        return {
            version_id
            for version_id in version_ids
            if self._access.authorize(caller, Action.VIEW_RELEASE, version_asset(version_id), purpose="list").allowed
        }

    def board_view(self, caller: Caller) -> dict[str, Any]:
        """The board page: the proposals the caller may see, each saying whether the caller may vote
        on it now (for the buttons; `vote` decides again), and the versions the caller may propose."""
        proposals = []
        for row in self._visible_proposals(caller):
            proposal = self._proposal_by_id(row["id"])
            done = {v["member"] for v in proposal["votes"]} | {c["member"] for c in proposal["conflicts"]}
            may_vote = (
                proposal["status"] == "voting"
                and proposal["proposer"] != caller.principal
                and caller.principal not in done
                and self._access.decide(caller, Action.VOTE_RELEASE, version_asset(row["model_version_id"])).allowed
            )
            proposals.append(proposal | {"may_vote": may_vote})
        versions = []
        for summary in self._registry.list_models(caller):  # a listing of what the caller may see
            for version in self._registry.get_model(summary.name, caller).versions:
                if self._access.decide(caller, Action.PROPOSE_RELEASE, version_asset(version.id)).allowed:
                    versions.append(version.reference)
        return {"proposals": proposals, "versions": versions}

    def verify_decision(self, caller: Caller, proposal_id: str) -> bool:
        """Check a decision's signature with the instance's public key."""
        proposal = self.proposal(caller, proposal_id)
        if not proposal["record"] or not proposal["signature"]:
            raise Conflict(
                f"proposal {proposal_id} has no signed decision yet", hint="it is signed when the board decides"
            )
        digest = hashlib.sha256(_signable(proposal["record"])).digest()
        return verify_ed25519(
            self._audit.signer().public_key_pem, base64.b64decode(proposal["signature"]), DECISION_CONTEXT + digest
        )

    # --- stages and re-assessment -----------------------------------------------------------

    def _stage_out(self, stage: dict[str, Any]) -> dict[str, Any]:
        now = self._clock.now()
        due_at = _aware(stage["due_at"])
        state = stage["status"]
        if state == "planned" and now >= due_at:
            state = "overdue" if now > due_at + self.rules.stage_grace else "due"
        return {
            "id": stage["id"],
            "position": stage["position"],
            "tier": stage["tier"],
            "due_at": isoformat(due_at),
            "condition": stage["condition"],
            "state": state,
            "proposal": stage["proposal_id"],
        }

    def timeline(self, caller: Caller, reference: str) -> dict[str, Any]:
        version = self._registry.find_version(reference, caller)
        with self._database.read() as connection:
            stages = store.stages(connection, version.id)
            proposals = store.list_proposals(connection, version.id)
            tier = store.effective_tier(connection, version.id)
        return {
            "model": version.reference,
            "tier": tier.value if tier else None,
            "decisions": [
                {
                    "proposal": p["id"],
                    "tier": p["tier"],
                    "status": p["status"],
                    "created_at": isoformat(_aware(p["created_at"])),
                    "effective_at": isoformat(_aware(p["effective_at"])) if p["effective_at"] else None,
                }
                for p in reversed(proposals)
            ],
            "stages": [self._stage_out(s) for s in stages],
            "reassessment": self._reassessment(version),
        }

    def due(self, caller: Caller) -> list[dict[str, Any]]:
        """Reminders: stages whose date has come (or passed), and versions whose decision needs
        re-assessment; only for versions whose proposals the caller may see (the rest are absent)."""
        out: list[dict[str, Any]] = []
        with self._database.read() as connection:
            stages = store.stages(connection)
            tiers = store.tier_rows(connection)
        candidates = {stage["model_version_id"] for stage in stages} | {row["model_version_id"] for row in tiers}
        visible = self._release_visible(caller, candidates)
        names = {version.id: version for version in self._every_version() if version.id in visible}
        for stage in stages:
            if stage["model_version_id"] not in names:
                continue
            shown = self._stage_out(stage)
            if shown["state"] in ("due", "overdue"):
                version = names[stage["model_version_id"]]
                out.append({"kind": f"stage {shown['state']}", "model": version.reference, **shown})
        for row in tiers:
            if row["model_version_id"] not in names:
                continue
            version = names[row["model_version_id"]]
            reasons = self._reassessment(version)
            if reasons:
                out.append({"kind": "re-assessment", "model": version.reference, "reasons": reasons})
        return out

    def _reassessment(self, version: ModelVersion) -> list[str]:
        """Why a version's decision in force should be re-assessed: new evidence, an incident, a policy change."""
        with self._database.read() as connection:
            effective = store.effective_proposal(connection, version.id)
            triggers = store.triggers(connection, version.id)
        if effective is None:
            return []
        reasons = []
        current = self.profile_view(version.reference).profile_version
        if current != effective["profile_version"]:
            reasons.append(f"new evidence: risk profile version {effective['profile_version']} -> {current}")
        policy = self.active_policy()
        if policy.digest != effective["policy_digest"]:
            reasons.append(f"policy changed: now {policy.label}")
        decided = _aware(effective["decided_at"] or effective["created_at"])
        reasons.extend(f"incident: {t['reason']}" for t in triggers if _aware(t["at"]) > decided)
        return reasons

    def trigger(self, caller: Caller, reference: str, reason: str) -> dict[str, Any]:
        """Record an incident on a model (the risk desk's hook): its decision must be re-assessed."""
        version = self._registry.find_version(reference, caller)
        self._ask(
            caller,
            Action.REPORT_INCIDENT,
            version,
            missing=_no_version(reference),
            message="recording an incident needs a registered member of the institution",
            hint="send the API key of a registered person",
        )
        reason = _text(reason, "the incident", "describe the incident (--reason)")
        row = {
            "id": new_id(),
            "model_version_id": version.id,
            "kind": "incident",
            "reason": reason,
            "at": self._clock.now(),
            "actor": caller.actor,
        }
        with self._database.transaction() as connection:
            store.insert_trigger(connection, row)
            self._audit.append(
                connection,
                actor=caller.actor,
                action="release.reassessment.triggered",
                resource=self._registry.log_name(version),
                details={"kind": "incident", "reason": reason},
                upper_tier=self._upper(version),
            )
        return {"model": version.reference, "reasons": self._reassessment(version)}

    # --- transparency -----------------------------------------------------------------------

    def public_registry(self) -> list[dict[str, Any]]:
        """Every model version with its tier and the public reasons; upper-tier entries redacted, never omitted."""
        with self._database.read() as connection:
            tiers = {row["model_version_id"]: row for row in store.tier_rows(connection)}
        return [self._public_entry(version, tiers.get(version.id)) for version in self._every_version()]

    def _every_version(self) -> list[ModelVersion]:
        """Every registered version, listed, not read: showing an upper-tier version (a canary)
        redacted touches nothing."""
        return [
            version
            for summary in self._registry.list_models()
            for version in self._registry.get_model(summary.name).versions
        ]

    def _public_entry(self, version: ModelVersion, tier_row: dict[str, Any] | None) -> dict[str, Any]:
        classification = self._registry.classification(version)
        level = classification.level if classification is not None else SecurityLevel.SL5
        redacted = level.upper_tier or (classification is not None and classification.canary)
        proposal = None
        if tier_row is not None:
            # Tiers set outside the board (tests, an operator's migration) have no proposal to show.
            with contextlib.suppress(NotFound):
                proposal = self._proposal_by_id(tier_row["decision_id"])
        else:
            # A decision made but not yet carried out (an opening in its cooling-off period) is public too.
            with self._database.read() as connection:
                pending = [
                    p
                    for p in store.list_proposals(connection, version.id)
                    if p["status"] in ("cooling-off", "challenged")
                ]
            proposal = self._proposal_by_id(pending[0]["id"]) if pending else None
        entry: dict[str, Any] = {
            "model": version.reference if not redacted else redacted_label(version),
            "tier": tier_row["tier"] if tier_row else "undecided",
            "effective_at": isoformat(_aware(tier_row["effective_at"])) if tier_row else None,
            "redacted": redacted,
            "withheld": [],
        }
        if redacted:
            entry["withheld"] = [
                {
                    "what": "name, weights' digest, evaluation results, decision reasons and votes",
                    "why": f"classified {level.name} (upper tier): details are disclosed to authorised reviewers "
                    "and the AI Office on request, not published",
                }
            ]
            return entry
        entry["manifest_digest"] = version.manifest_digest
        entry["controls"] = controls(Tier(tier_row["tier"])).as_dict() if tier_row else None
        if proposal is not None:
            record = proposal["record"] or {}
            entry["decision"] = {
                "proposal": proposal["id"],
                "tier": proposal["tier"],
                "status": proposal["status"],
                "cooling_off_until": proposal["cooling_off_until"],
                "summary": proposal["decision"]["summary"],
                "rationale": proposal["rationale"],
                "levels": proposal["decision"]["levels"],
                "missing": proposal["decision"]["missing"],
                "obligations": proposal["decision"]["obligations"],
                "policy": proposal["decision"]["policy"],
                "votes": [{"approve": v["approve"], "reason": v["reason"]} for v in proposal["votes"]],
                "dissent": [{"reason": d["reason"]} for d in proposal["dissent"]],
                "policy_allows": proposal["decision"]["tier"],
                "conflicts_declared": len(proposal["conflicts"]),
                "decided_at": proposal["decided_at"],
                "signature": proposal["signature"],
                "record_sha256": hashlib.sha256(_signable(record)).hexdigest() if record else None,
            }
            entry["withheld"] = [
                {
                    "what": "board members' names on individual votes",
                    "why": "votes are published with reasons; names stay internal",
                },
                {
                    "what": "item-level evaluation answers",
                    "why": "generated answers to hazardous prompts are not published",
                },
            ]
        return entry

    def transparency(self, caller: Caller, reference: str) -> dict[str, Any]:
        """The data of a release's model card, safety and security report and EU documentation form."""
        return self._transparency(caller, reference)[1]

    def report(self, caller: Caller, reference: str, fmt: str) -> bytes:
        """A release's public report as md, html, json or pdf. A PDF is printed once per decision
        and content and kept in the instance's files; while every printer is busy a request gets
        `PrinterBusy` (503, retry shortly) at once instead of waiting."""
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown report format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
        version, data = self._transparency(caller, reference)
        if fmt != "pdf" or self._printer is None:
            return render(data, fmt)
        decision = data["release"].get("decision") or {}
        return self._printer.pdf(version.id, decision.get("proposal"), data)

    def _transparency(self, caller: Caller, reference: str) -> tuple[ModelVersion, dict[str, Any]]:
        """Public: a version that does not exist and one whose registry entry is redacted (upper
        tier, canary) give the same error, whoever asks."""
        name, number = parse_reference(reference)
        missing = NotFound(
            f"no public release report for {name}:{number}",
            hint="the public registry (/registry, GET /api/v1/registry) lists every release",
        )
        try:
            # Found as in a listing, not read: asking for a report by name reads nothing protected.
            model = self._registry.get_model(name)
        except NotFound:
            raise missing from None
        version = next((v for v in model.versions if v.version == number), None)
        if version is None:
            raise missing
        with self._database.read() as connection:
            tier_row = next((row for row in store.tier_rows(connection) if row["model_version_id"] == version.id), None)
        entry = self._public_entry(version, tier_row)
        if entry["redacted"]:
            # Naming an upper-tier version is reaching for it: the access service records that decision
            # (and a canary's watch hears of it) for whoever asked; the answer is the same as for none.
            self._access.authorize(caller, Action.VIEW, version_asset(version.id))
            raise missing
        # The entry is public (checked above): its report publishes the risk profile to everyone.
        profile = self._risk.profile(version.reference, caller=SYSTEM)
        decision = self.evaluate(SYSTEM, version.reference)
        return version, {
            "model": version.reference,
            "name": version.model_name,
            "version": version.version,
            "registered_at": isoformat(_aware(version.registered_at)),
            "architecture": version.architecture,
            "model_type": version.model_type,
            "parameters": version.parameter_count,
            "format": version.format.value,
            "total_bytes": version.total_bytes,
            "manifest_digest": version.manifest_digest,
            "licence": version.facts.licence,
            "base_model": version.facts.lineage.base_model,
            "training_flop": version.facts.training_flop,
            "modalities": [m.value for m in version.facts.modalities],
            "intended_use": version.facts.intended_use,
            "description": version.facts.description,
            "data_summary": version.facts.data_summary,
            "release": entry,
            "current_policy_decision": decision.to_dict(),
            "evidence": [
                {
                    key: e.get(key)
                    for key in ("id", "kind", "title", "suite", "domain", "safeguard", "headline", "created_at")
                }
                | {"caveat": (e.get("summary") or {}).get("caveat")}
                for e in profile["evidence"]
            ],
            "profile_version": profile["profile_version"],
        }


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored moment is UTC."""
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def redacted_label(version: ModelVersion) -> str:
    """How public surfaces (the registry, the licensing catalogue) list a version they redact."""
    return f"upper-tier model {version.id[:8]}"


def _no_proposal(proposal_id: str) -> NotFound:
    """What a proposal that does not exist and one the caller may not see both raise."""
    return NotFound(f"no release proposal {proposal_id}", hint="see `aperture release proposals`")


def _no_version(reference: str) -> NotFound:
    """The registry's answer for a version that does not exist (or that the caller may not see)."""
    name, _, _ = reference.partition(":")
    return NotFound(f"no version {reference}", hint=f"`aperture models show {name}` lists the versions of a model")


def _not_open(proposal: dict[str, Any]) -> Conflict:
    return Conflict(
        f"proposal {proposal['id']} is {proposal['status']}, not open for votes", hint="see `aperture release show`"
    )
