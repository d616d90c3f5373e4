"""/api/v1/release and /api/v1/registry: decisions, the board, stages and the public registry.

Reading the public registry and a release's reports needs no key; every act (proposing, voting,
declaring a conflict, challenging, carrying out, adopting a policy) and every internal read
(proposals, the due list) is the signed-in caller's, decided by the release service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from aperture.http_support import SignedIn, Visitor
from aperture.release.domain import CONTROLS, Tier
from aperture.release.reports import PrinterBusy
from aperture.release.service import parse_stage

if TYPE_CHECKING:
    from aperture.bootstrap import Services

MEDIA = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "pdf": "application/pdf",
}


class ProposalIn(BaseModel):
    model: str = Field(description="NAME:VERSION")
    tier: Tier
    rationale: str = Field(min_length=1, max_length=4000)
    stages: list[str] = Field(default_factory=list, description="Later stages, TIER@DAYS[:CONDITION]")
    stage_id: str | None = Field(None, description="Decide this planned stage (when due)")
    comparable_open_model: str | None = None


class VoteIn(BaseModel):
    approve: bool
    reason: str = Field(min_length=1, max_length=4000)


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=4000)


class PolicyIn(BaseModel):
    text: str = Field(min_length=1, max_length=1024 * 1024, description="The policy YAML")
    reason: str = Field(min_length=1, max_length=4000)


def build_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["release"])
    release = services.release

    @router.get("/release/tiers", summary="The four tiers, most open first, and the controls each implies")
    def tiers() -> list[dict[str, Any]]:
        return [CONTROLS[t].as_dict() for t in Tier]

    @router.get("/release/policy", summary="The release policy in force (YAML) and the adopted history")
    def policy() -> dict[str, Any]:
        return {"text": release.policy_text(), "adopted": release.policies()}

    @router.post(
        "/release/policy", summary="Adopt a release policy (administrators, chief scientists)", status_code=201
    )
    def adopt(body: PolicyIn, caller: SignedIn) -> dict[str, Any]:
        return release.adopt_policy(caller, body.text, body.reason)

    @router.post("/release/policy/check", summary="Validate a policy document without adopting it")
    def check(text: str = Body(..., media_type="text/plain")) -> dict[str, Any]:
        from aperture.release.policy import parse_policy

        parsed = parse_policy(text, "the posted policy")
        return {"name": parsed.name, "version": parsed.version, "digest": parsed.digest, "rules": len(parsed.rules)}

    @router.get("/models/{name}/versions/{version}/release-decision", summary="What the policy in force decides now")
    def evaluate(name: str, version: str, caller: Visitor) -> dict[str, Any]:
        return release.evaluate(caller, f"{name}:{version}").to_dict()

    @router.get("/models/{name}/versions/{version}/release-timeline", summary="Decisions, stages and re-assessment")
    def timeline(name: str, version: str, caller: Visitor) -> dict[str, Any]:
        return release.timeline(caller, f"{name}:{version}")

    @router.post(
        "/release/proposals", summary="Propose a tier to the release board (programme directors)", status_code=201
    )
    def propose(body: ProposalIn, caller: SignedIn) -> dict[str, Any]:
        stages = [parse_stage(text) for text in body.stages]
        return release.propose(
            caller,
            body.model,
            body.tier,
            body.rationale,
            stages=stages,
            stage_id=body.stage_id,
            comparable_open_model=body.comparable_open_model,
        )

    @router.get("/release/proposals", summary="Release proposals you may see, newest first")
    def proposals(caller: SignedIn) -> list[dict[str, Any]]:
        return release.proposals(caller)

    @router.get("/release/proposals/{proposal_id}", summary="A proposal with votes, conflicts and its signed decision")
    def proposal(proposal_id: str, caller: SignedIn) -> dict[str, Any]:
        return release.proposal(caller, proposal_id)

    @router.post("/release/proposals/{proposal_id}/votes", summary="Vote (board members; one vote, with a reason)")
    def vote(proposal_id: str, body: VoteIn, caller: SignedIn) -> dict[str, Any]:
        return release.vote(caller, proposal_id, body.approve, body.reason)

    @router.post("/release/proposals/{proposal_id}/conflicts", summary="Declare a conflict of interest")
    def conflict(proposal_id: str, body: ReasonIn, caller: SignedIn) -> dict[str, Any]:
        return release.declare_conflict(caller, proposal_id, body.reason)

    @router.post("/release/proposals/{proposal_id}/challenges", summary="Challenge an opening during cooling-off")
    def challenge(proposal_id: str, body: ReasonIn, caller: SignedIn) -> dict[str, Any]:
        return release.challenge(caller, proposal_id, body.reason)

    @router.post("/release/proposals/{proposal_id}/carry-out", summary="Open the weights after the cooling-off period")
    def carry_out(proposal_id: str, caller: SignedIn) -> dict[str, Any]:
        return release.carry_out(caller, proposal_id)

    @router.post("/release/proposals/{proposal_id}/withdraw", summary="Withdraw a proposal (its proposer)")
    def withdraw(proposal_id: str, body: ReasonIn, caller: SignedIn) -> dict[str, Any]:
        return release.withdraw(caller, proposal_id, body.reason)

    @router.get("/release/due", summary="Stages due or overdue and decisions to re-assess (those you may see)")
    def due(caller: SignedIn) -> list[dict[str, Any]]:
        return release.due(caller)

    @router.post("/models/{name}/versions/{version}/incidents", summary="Record an incident: re-assess the decision")
    def incident(name: str, version: str, body: ReasonIn, caller: SignedIn) -> dict[str, Any]:
        return release.trigger(caller, f"{name}:{version}", body.reason)

    @router.get("/registry", summary="The public registry: every model, its tier and reasons (no key needed)")
    def public_registry() -> list[dict[str, Any]]:
        return release.public_registry()

    @router.get(
        "/registry/{name}/{version}/report.{fmt}",
        summary="A release's model card, safety and security report and EU form: md, html, json or pdf",
        responses={503: {"description": "every PDF printer is busy: retry after the Retry-After seconds"}},
    )
    def report(name: str, version: str, fmt: str, caller: Visitor) -> Response:
        try:
            content = release.report(caller, f"{name}:{version}", fmt)
        except PrinterBusy as busy:
            return JSONResponse(
                {"error": busy.to_dict()},
                status_code=busy.http_status,
                headers={"Retry-After": str(busy.retry_after_s)},
            )
        filename = f"{name}-{version}-release-report.{fmt}"
        disposition = "attachment" if fmt == "pdf" else "inline"
        return Response(
            content, media_type=MEDIA[fmt], headers={"Content-Disposition": f'{disposition}; filename="{filename}"'}
        )

    return router
