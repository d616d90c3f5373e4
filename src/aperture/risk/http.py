"""/api/v1 risk assessment: suites, risk profiles, runs, evidence import and expert findings.

Runs are started from the CLI (`aperture assess run`), where the model is loaded in a process of
its own; the server reads their results and takes evidence from elsewhere. Uploads are read with
a size bound before anything is parsed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from aperture.core.errors import InvalidInput, TooLarge
from aperture.http_support import SignedIn
from aperture.risk.domain import MAX_LOG_JSON_BYTES, RiskDomain, Safeguard
from aperture.risk.service import MAX_ATTACHMENT_BYTES

if TYPE_CHECKING:
    from aperture.bootstrap import Services


def _read_bounded(upload: UploadFile, limit: int) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{upload.filename or 'the upload'} is larger than {limit} bytes", hint="send a smaller file")
    return data


def build_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["risk assessment"])
    risk = services.risk

    @router.get("/assessment/suites", summary="The evaluation suites and what each measures")
    def list_suites(caller: SignedIn) -> list[dict[str, Any]]:
        return [suite.to_dict() for suite in risk.suites(caller)]

    @router.get(
        "/models/{name}/versions/{version}/risk-profile",
        summary="A version's risk profile: per domain and safeguard, evidence, headline with 95% CI, gaps",
    )
    def get_profile(
        name: str,
        version: str,
        caller: SignedIn,
        profile_version: int | None = Query(None, ge=0, le=2**63 - 1, description="Default: the latest."),
    ) -> dict[str, Any]:
        return risk.profile(f"{name}:{version}", profile_version, caller=caller)

    @router.get("/models/{name}/versions/{version}/assessment-runs", summary="Assessment runs of a version")
    def list_runs(name: str, version: str, caller: SignedIn) -> list[dict[str, Any]]:
        return risk.runs(caller, f"{name}:{version}")

    @router.get("/assessment/runs/{run_id}", summary="One run with every item's result (assessor roles)")
    def get_run(run_id: str, caller: SignedIn) -> dict[str, Any]:
        return risk.run_details(caller, run_id)

    @router.post(
        "/models/{name}/versions/{version}/evidence",
        summary="Import an Inspect log (.eval/.json) or lm-evaluation-harness results JSON as evidence",
        status_code=201,
    )
    def import_evidence(
        name: str,
        version: str,
        caller: SignedIn,
        file: UploadFile = File(..., description="The evaluation log."),
        override_reason: str | None = Form(None, description="Accept a log naming another model digest, and why."),
    ) -> dict[str, Any]:
        data = _read_bounded(file, MAX_LOG_JSON_BYTES)
        items, profile_version = risk.import_log(
            caller, f"{name}:{version}", data, file.filename or "upload", override_reason=override_reason
        )
        return {"evidence": [i.to_dict() for i in items], "profile_version": profile_version}

    @router.post(
        "/models/{name}/versions/{version}/findings",
        summary="Attach a manual expert finding (e.g. a red-team report), optionally with the report file",
        status_code=201,
    )
    def add_finding(
        name: str,
        version: str,
        caller: SignedIn,
        title: str = Form(...),
        author: str = Form(...),
        summary: str = Form(""),
        domain: RiskDomain | None = Form(None),
        safeguard: Safeguard | None = Form(None),
        attachment: UploadFile | None = File(None),
        level: str | None = Form(None),
    ) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="aperture-finding-") as temp:
            path: Path | None = None
            if attachment is not None and attachment.filename:
                safe_name = Path(attachment.filename).name
                if not safe_name or safe_name in (".", ".."):
                    raise InvalidInput("the attachment has no usable file name", hint="name the file")
                path = Path(temp) / safe_name
                path.write_bytes(_read_bounded(attachment, MAX_ATTACHMENT_BYTES))
            evidence, profile_version = risk.add_finding(
                caller,
                f"{name}:{version}",
                title=title,
                summary=summary,
                author=author,
                domain=domain,
                safeguard=safeguard,
                attachment=path,
                level=level,
            )
        return {"evidence": evidence.to_dict(), "profile_version": profile_version}

    return router
