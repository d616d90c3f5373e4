"""Licensing pages: the public catalogue and terms (/licensing), an applicant's applications and
licences with their downloads, and the officers' queue, screening, decisions and lifecycle.

Thin adapters over `LicensingService`; every form posts with the session's CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from aperture.access.domain import Action, Caller
from aperture.licensing.domain import LICENCE_TEXT, TRANSITIONS, format_amount, parse_amount
from aperture.web.sessions import check_csrf

if TYPE_CHECKING:
    from aperture.bootstrap import Services

Render = Callable[..., HTMLResponse]


def mount_licensing(
    app: FastAPI,
    services: Services,
    render: Render,
    me: Callable[[Request], Caller],
    back: Callable[[str], RedirectResponse],
) -> None:
    licensing = services.licensing

    def signed_in(request: Request) -> Caller | None:
        caller = me(request)
        return caller if caller.session else None

    @app.get("/licensing", response_class=HTMLResponse, include_in_schema=False)
    def licensing_page(request: Request) -> HTMLResponse:
        caller = me(request)
        context: dict[str, Any] = {
            "catalogue": licensing.catalogue(caller),
            "licence_text": LICENCE_TEXT,
            "transitions": [(s.value, e.value, t.value) for (s, e), t in TRANSITIONS.items()],
            "officer": False,
            "applications": [],
            "licences": [],
        }
        if caller.session:
            context["officer"] = licensing.desk(caller)
            context["applications"] = licensing.list_applications(caller)
            context["licences"] = licensing.list_licences(caller)
        return render(request, "licensing.html", "licensing", format_amount=format_amount, **context)

    @app.get("/licensing/apply", response_class=HTMLResponse, include_in_schema=False)
    def apply_page(request: Request, model: str = "") -> Response:
        if signed_in(request) is None:
            return back(f"/login?next=/licensing/apply?model={model}")
        caller = me(request)
        catalogue = [entry for entry in licensing.catalogue(caller) if not entry.redacted]
        return render(request, "licensing_apply.html", "licensing", model=model, catalogue=catalogue)

    @app.post("/licensing/apply", include_in_schema=False)
    def apply(
        request: Request,
        model: str = Form(...),
        intended_use: str = Form(...),
        fields_of_use: str = Form(...),
        territories: str = Form(...),
        security_level: int = Form(...),
        certifications: str = Form(""),
        incidents: str = Form(""),
        parent: str = Form(""),
        non_eu_control: str = Form(""),
        fee: str = Form("0"),
        currency: str = Form("EUR"),
        schedule: str = Form("annual"),
        term_months: int = Form(24),
        csrf: str = Form(""),
    ) -> Response:
        check_csrf(request, csrf)
        application = licensing.apply(
            me(request),
            model,
            intended_use=intended_use,
            fields_of_use=[f.strip() for f in fields_of_use.split(",") if f.strip()],
            territories=[t.strip() for t in territories.split(",") if t.strip()],
            claimed_level=security_level,
            certifications=[c.strip() for c in certifications.split(",") if c.strip()],
            incidents=incidents,
            parent=parent or None,
            non_eu_control=non_eu_control or None,
            fee_minor=parse_amount(fee),
            currency=currency,
            schedule=schedule,
            term_months=term_months,
        )
        return back(f"/licensing/applications/{application.id}")

    @app.get("/licensing/applications/{application_id}", response_class=HTMLResponse, include_in_schema=False)
    def application_page(request: Request, application_id: str) -> Response:
        caller = signed_in(request)
        if caller is None:
            return back(f"/login?next=/licensing/applications/{application_id}")
        application = licensing.get_application(caller, application_id)
        answers = {a.question: a for a in application.screening}
        return render(
            request,
            "licensing_application.html",
            "licensing",
            a=application,
            officer=licensing.permits(caller, Action.SCREEN_LICENCE_APPLICATION, application.model_version_id),
            checklist=licensing.checklist(),
            answers=answers,
            licences=[lic for lic in licensing.list_licences(caller) if lic.application_id == application.id],
            format_amount=format_amount,
        )

    @app.post("/licensing/applications/{application_id}/screen", include_in_schema=False)
    def screen(
        request: Request,
        application_id: str,
        question: str = Form(...),
        answer: str = Form(...),
        note: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        check_csrf(request, csrf)
        licensing.screen(me(request), application_id, question, answer, note)
        return back(f"/licensing/applications/{application_id}")

    @app.post("/licensing/applications/{application_id}/decide", include_in_schema=False)
    def decide(
        request: Request, application_id: str, outcome: str = Form(...), reasons: str = Form(""), csrf: str = Form("")
    ) -> Response:
        check_csrf(request, csrf)
        licensing.decide(me(request), application_id, outcome, reasons)
        return back(f"/licensing/applications/{application_id}")

    @app.post("/licensing/applications/{application_id}/second", include_in_schema=False)
    def second(request: Request, application_id: str, csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        licensing.second_approval(me(request), application_id)
        return back(f"/licensing/applications/{application_id}")

    @app.post("/licensing/applications/{application_id}/answer", include_in_schema=False)
    def answer(request: Request, application_id: str, text: str = Form(...), csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        licensing.answer_request(me(request), application_id, text)
        return back(f"/licensing/applications/{application_id}")

    @app.post("/licensing/applications/{application_id}/licence", include_in_schema=False)
    def grant(request: Request, application_id: str, csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        licence = licensing.grant_licence(me(request), application_id)
        return back(f"/licensing/licences/{licence.id}")

    @app.get("/licensing/licences/{licence_id}", response_class=HTMLResponse, include_in_schema=False)
    def licence_page(request: Request, licence_id: str) -> Response:
        caller = signed_in(request)
        if caller is None:
            return back(f"/login?next=/licensing/licences/{licence_id}")
        licence = licensing.get_licence(caller, licence_id)
        version_id = licence.terms.model_version_id
        return render(
            request,
            "licensing_licence.html",
            "licensing",
            licence=licence,
            officer=licensing.permits(caller, Action.MANAGE_LICENCE, version_id),
            licensee=licensing.may_download(caller, licence),
            receivables=licensing.receivables(caller, licence_id),
            copies=licensing.list_copies(caller, licence_id),
            in_force=licence.in_force(services.clock.now().date()),
            format_amount=format_amount,
        )

    @app.post("/licensing/licences/{licence_id}/event", include_in_schema=False)
    def event(
        request: Request, licence_id: str, event: str = Form(...), reason: str = Form(""), csrf: str = Form("")
    ) -> Response:
        check_csrf(request, csrf)
        licensing.change_licence(me(request), licence_id, event, reason)
        return back(f"/licensing/licences/{licence_id}")

    @app.post("/licensing/licences/{licence_id}/copies", include_in_schema=False)
    def issue_copy(request: Request, licence_id: str, csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        licensing.issue_copy(me(request), licence_id)
        return back(f"/licensing/licences/{licence_id}")

    @app.post("/licensing/copies/{copy_id}/download", include_in_schema=False)
    def download(request: Request, copy_id: str, csrf: str = Form("")) -> Response:
        """A single-use token made and spent at once for the signed-in licensee."""
        check_csrf(request, csrf)
        caller = me(request)
        issued = licensing.issue_download_token(caller, copy_id)
        found = licensing.redeem(caller, issued.token)
        headers = {"Content-Disposition": f'attachment; filename="{found.filename}"'}
        return StreamingResponse(found.chunks, media_type=found.media_type, headers=headers)
