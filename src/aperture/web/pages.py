"""Server-rendered pages: home, models list and detail, the transparency log.

Thin adapters: each page calls service read functions and renders a template.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from aperture import __version__
from aperture.access.domain import SYSTEM, Action, Caller
from aperture.audit.domain import shown_member, shown_text
from aperture.core.errors import ApertureError, InvalidInput, NotFound
from aperture.release.domain import Tier
from aperture.release.policy import PolicyLine, policy_lines
from aperture.release.service import parse_stage
from aperture.risk.reading import (
    P_VALUE_MEANING,
    direction_text,
    higher_is_worse,
    jailbreak_count,
    limits,
    outside_in_risky_direction,
)
from aperture.vault.keys import load_or_create_secret
from aperture.web.charts import BudgetSeries, IntervalRow, Mark, ReferenceLine, budget_chart, interval_chart
from aperture.web.sessions import Sessions, check_csrf, replace_session, session, session_id, viewer

if TYPE_CHECKING:
    from aperture.bootstrap import Services

_TITLES = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 422: "Not valid"}


def _templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("aperture.web", "templates"), autoescape=select_autoescape(["html"]))
    env.globals["version"] = __version__
    env.filters["bytes"] = human_bytes
    env.filters["count"] = human_count
    env.filters["flop"] = human_flop
    env.filters["code_spans"] = code_spans
    env.filters["direction"] = direction_text  # a metric's risky direction: "higher is worse"
    env.filters["shown"] = shown_text  # an event's member: its value, or [withheld: internal]
    env.globals["shown_member"] = shown_member  # the disclosed value in a private view, else the member
    return Jinja2Templates(env=env)


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def human_count(value: int | None) -> str:
    if value is None:
        return "—"
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.1f}{suffix}"
    return str(value)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def human_flop(value: int) -> str:
    """2e25 -> "2.0 × 10²⁵ FLOP": training compute reads in powers of ten, as in the EU AI Act."""
    if value < 1000:
        return f"{value} FLOP"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)} FLOP"


def code_spans(text: str) -> Markup:
    """Show `command` spans (as hints write them) as code; everything else escaped as text."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: plain text
        return escape(text)
    out = Markup()
    for position, part in enumerate(parts):
        out += Markup("<code>%s</code>") % part if position % 2 else escape(part)
    return out


def error_page(request: Request, status: int, message: str, hint: str) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    viewer: dict[str, Any] = {"me": None, "desk": False}
    if status < 500:  # a server error may be the database failing: do not ask it who is viewing
        with contextlib.suppress(Exception):  # the error page must render even if this fails
            viewer = request.app.state.page_viewer(request)
    context = {
        "status": status,
        "title": _TITLES.get(status, "Something went wrong"),
        "message": message,
        "hint": hint,
        "back": _same_site_referrer(request) if request.method == "POST" else None,
        "csrf": session(request).get("csrf", ""),
        **viewer,
    }
    return templates.TemplateResponse(request, "error.html", context, status_code=status)


def _marks(lines: Sequence[PolicyLine], subject: str, metric: str) -> tuple[Mark, ...]:
    return tuple(Mark(line.at, line.label) for line in lines if line.subject == subject and line.metric == metric)


def _row(
    label: str, headline: dict[str, Any], tone: str = "accent", note: str = "", marks: tuple[Mark, ...] = ()
) -> IntervalRow:
    low, high = headline["ci95"]
    return IntervalRow(label, headline["value"], low, high, note or f"n={headline['n']}", tone, marks)


def _newest(evidence: list[dict[str, Any]], suite: str) -> dict[str, Any] | None:
    """The newest evidence item of a suite (the profile lists evidence newest first)."""
    return next((e for e in evidence if e["suite"] == suite and e["headline"]), None)


@dataclass
class RiskCharts:
    """The risk page's pictures; empty strings for those without data."""

    knowledge: str = ""
    safeguards_worse: str = ""
    safeguards_better: str = ""
    templates: str = ""
    tamper: list[tuple[str, str]] = field(default_factory=list)  # (suite and metric, chart of each attack)
    tamper_curve: str = ""

    def __bool__(self) -> bool:
        return any((self.knowledge, self.safeguards_worse, self.safeguards_better, self.templates, self.tamper))


def _axis(metric: str) -> str:
    return f"{metric.replace('_', ' ')}: {direction_text(metric)} →"


def risk_charts(profile: dict[str, Any], lines: Sequence[PolicyLine] = ()) -> RiskCharts:
    """The risk page's pictures, from a profile payload and the policy's lines: knowledge vs chance,
    safeguards (higher-is-worse and higher-is-better apart), templates, each tamper attack."""
    charts = RiskCharts()
    knowledge = [
        _row(
            row["subject"],
            row["headline"]["headline"],
            "bad" if row["crossed"] else "accent",
            marks=_marks(lines, row["subject"], row["headline"]["headline"]["metric"]),
        )
        for row in profile["domains"]
        if row["headline"] and row["headline"]["headline"]
    ]
    if knowledge:
        charts.knowledge = interval_chart(
            knowledge,
            [ReferenceLine(0.25, "chance 25%")],
            "Hazardous-knowledge accuracy with 95% CI",
            "accuracy: higher is worse (more hazardous knowledge) →",
        )
    worse: list[IntervalRow] = []
    better: list[IntervalRow] = []
    for row in profile["safeguards"]:
        headline = row["headline"]
        if headline and headline["headline"]:
            value = headline["headline"]
            metric = value["metric"]
            unit = "prompts" if headline["suite"] == "jailbreak" else "items"
            note = f"{metric.replace('_', ' ')}, n={value['n']} {unit}"
            tone = "bad" if row["crossed"] else "accent"
            one = _row(row["subject"], value, tone, note, _marks(lines, row["subject"], metric))
            (worse if higher_is_worse(metric) is not False else better).append(one)
    if worse:
        charts.safeguards_worse = interval_chart(
            worse, (), "Safeguard metrics where higher is worse, with 95% CI", "rate: higher is worse →"
        )
    if better:
        charts.safeguards_better = interval_chart(
            better, (), "Safeguard metrics where higher is better, with 95% CI", "rate: higher is better →"
        )
    evidence = profile["evidence"]
    jailbreak = _newest(evidence, "jailbreak")
    if jailbreak and jailbreak["summary"].get("by_template"):
        rows = [
            _row(name, value, "warn", f"n={value['n']} prompts")
            for name, value in jailbreak["summary"]["by_template"].items()
        ]
        best = jailbreak["headline"]
        marks = _marks(lines, "jailbreak-robustness", best["metric"])
        rows.append(_row("any template (best attack)", best, "bad", f"n={best['n']} prompts", marks))
        charts.templates = interval_chart(
            rows, (), "Attack success rate per jailbreak template", _axis("attack_success_rate")
        )
    tamper = _newest(evidence, "tamper")
    if tamper:
        cells = tamper["summary"].get("cells", [])
        for suite, row in tamper["summary"]["suites"].items():
            base = row["baseline"]
            metric = base["metric"]
            points = [_row("before any attack", base, "accent", f"n={base['n']}")]
            for cell in cells:
                if suite not in cell["metrics"]:
                    continue
                value = cell["metrics"][suite]
                label = f"{cell['method']} lr {cell['learning_rate']:g}, {cell['steps']} steps, seed {cell['seed']}"
                broke = outside_in_risky_direction(metric, value["value"], base["ci95"])
                points.append(_row(label, value, "bad" if broke else "warn", f"n={value['n']}"))
            title = f"{suite} {metric.replace('_', ' ')} before and after each attack"
            charts.tamper.append(
                (f"{suite}: {metric.replace('_', ' ')}", interval_chart(points, (), title, _axis(metric)))
            )
        if len({cell["steps"] for cell in cells}) >= 2:  # one budget is a point, not a curve
            series = []
            for index, (suite, row) in enumerate(tamper["summary"]["suites"].items()):
                low, high = row["baseline"]["ci95"]
                points_of = [(point["steps"], point["worst_value"]) for point in row["budget_curve"]]
                series.append(
                    BudgetSeries(f"{suite} ({row['worst']['metric']})", points_of, low, high, TONES[index % 3])
                )
            charts.tamper_curve = budget_chart(series, "Worst case after fine-tuning attacks, by budget")
    return charts


TONES = ("accent", "bad", "warn")


def _same_site_referrer(request: Request) -> str | None:
    """Where a refused form was submitted from, when it is a page of this site (a path only)."""
    referrer = urlsplit(request.headers.get("referer", ""))
    if referrer.netloc != request.url.netloc or not referrer.path.startswith("/") or referrer.path.startswith("//"):
        return None
    return referrer.path + (f"?{referrer.query}" if referrer.query else "")


def mount(app: FastAPI, services: Services) -> None:
    templates = _templates()
    app.state.templates = templates
    static_dir = resources.files("aperture.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    settings = services.settings
    sessions = Sessions(load_or_create_secret(settings.keys_dir), settings.session_ttl_s, settings.cookie_secure)
    app.middleware("http")(sessions.middleware())

    def me(request: Request) -> Caller:
        return viewer(request, lambda sid, origin: services.access.session_caller(sid, origin=origin))

    def page_viewer(request: Request) -> dict[str, Any]:
        """Who is viewing (for the header): the signed-in person, and whether they are the desk."""
        caller = me(request)
        signed_in = caller.session
        desk = signed_in and services.access.permits(caller, Action.VIEW_SECURITY)
        return {"me": caller if signed_in else None, "desk": desk}

    app.state.page_viewer = page_viewer

    def render(request: Request, name: str, section: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        base = {"section": section, **page_viewer(request), "csrf": session(request).get("csrf", "")}
        return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)

    def back(to: str) -> RedirectResponse:
        return RedirectResponse(to, status_code=303)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", "login", next=next if next.startswith("/") else "/", problem=None)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    def login(
        request: Request,
        name: str = Form(...),
        password: str = Form(...),
        csrf: str = Form(""),
        next: str = Form("/"),
    ) -> Response:
        check_csrf(request, csrf)
        origin = request.client.host if request.client else None
        try:
            _, sid = services.access.login(name.strip(), password, origin=origin)
        except ApertureError as refused:
            return render(request, "login.html", "login", status_code=401, next=next, problem=refused.message)
        replace_session(request, {"csrf": session(request)["csrf"], "sid": sid})
        return back(next if next.startswith("/") and not next.startswith("//") else "/")

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: str = Form("")) -> Response:
        """Sign out: the session ends on the server, so a copy of the cookie stops working too."""
        check_csrf(request, csrf)
        sid = session_id(request)
        if sid is not None:
            services.access.logout(sid, origin=request.client.host if request.client else None)
        replace_session(request, {"csrf": session(request)["csrf"]})
        return back("/")

    @app.get("/account", response_class=HTMLResponse, include_in_schema=False)
    def account_page(request: Request) -> Response:
        """Your own API keys, and a form to issue one for yourself (signed in with your password)."""
        caller = me(request)
        if not caller.session:
            return back("/login?next=/account")
        keys = services.access.own_keys(caller)
        return render(request, "account.html", "account", keys=keys, issued=None, now=services.clock.now())

    @app.post("/account/keys", response_class=HTMLResponse, include_in_schema=False)
    def issue_own_key(
        request: Request, name: str = Form(...), scopes: str = Form(""), csrf: str = Form("")
    ) -> Response:
        check_csrf(request, csrf)
        caller = me(request)
        chosen = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        issued = services.access.issue_key(caller, name=name, principal=caller.principal, scopes=chosen or None)
        keys = services.access.own_keys(caller)
        return render(
            request, "account.html", "account", status_code=201, keys=keys, issued=issued, now=services.clock.now()
        )

    @app.get("/security", response_class=HTMLResponse, include_in_schema=False)
    def security_page(request: Request) -> Response:
        caller = me(request)
        if not caller.session:
            return back("/login?next=/security")
        security = services.security
        desk = services.access.permits(caller, Action.VIEW_SECURITY)
        custodian = services.access.permits(caller, Action.UNSEAL)
        return render(
            request,
            "security.html",
            "security",
            seal=security.seal_status(caller),
            custodian=custodian,
            alerts=security.alerts(caller, limit=50) if desk else [],
            grants=security.list_grants(caller),
            now=services.clock.now(),
        )

    @app.post("/security/shares", include_in_schema=False)
    def present_share(request: Request, share: str = Form(...), csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        services.security.present_share(me(request), share)
        return back("/security")

    @app.post("/security/grants/{grant_id}/approve", include_in_schema=False)
    def approve_grant(request: Request, grant_id: str, csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        services.security.approve_grant(me(request), grant_id)
        return back("/security")

    @app.post("/security/grants/{grant_id}/revoke", include_in_schema=False)
    def revoke_grant(request: Request, grant_id: str, csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        services.security.revoke_grant(me(request), grant_id)
        return back("/security")

    @app.post("/security/alerts/{alert_id}/acknowledge", include_in_schema=False)
    def acknowledge(request: Request, alert_id: str, csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        services.security.acknowledge(me(request), alert_id)
        return back("/security")

    @app.get("/people", response_class=HTMLResponse, include_in_schema=False)
    def people_page(request: Request) -> Response:
        caller = me(request)
        if not caller.session:
            return back("/login?next=/people")
        access = services.access
        principals = access.principals(caller)  # the security desk's: others get a 403
        return render(
            request,
            "people.html",
            "people",
            states=access.states(caller),
            organisations=access.organisations(caller),
            programmes=access.programmes(caller),
            principals=principals,
        )

    @app.get("/gateway/usage", response_class=HTMLResponse, include_in_schema=False)
    def usage_page(
        request: Request,
        organisation: str | None = None,
        since: str | None = None,
        until: str | None = None,
        format: str = "html",
    ) -> Response:
        """An organisation's gateway usage: daily totals per key and model, priced (CSV with format=csv)."""
        caller = me(request)
        if not caller.session:
            return back("/login?next=/gateway/usage")
        own = services.gateway.organisation_of(caller)
        rows = services.gateway.usage(caller, organisation=organisation or own, since=since, until=until)
        if format == "csv":
            return Response(
                services.gateway.usage_csv(rows),
                media_type="text/csv",
                headers={"content-disposition": 'attachment; filename="usage.csv"'},
            )
        totals = {
            "requests": sum(r.requests for r in rows),
            "blocked": sum(r.blocked for r in rows),
            "prompt_tokens": sum(r.prompt_tokens for r in rows),
            "completion_tokens": sum(r.completion_tokens for r in rows),
            "cost_eur": sum(r.cost_eur for r in rows),
        }
        return render(
            request,
            "usage.html",
            "usage",
            rows=rows,
            totals=totals,
            organisation=organisation or own,
            since=since or "",
            until=until or "",
            prices=services.gateway.prices(),
        )

    from aperture.web.licensing_pages import mount_licensing

    mount_licensing(app, services, render, me, back)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request) -> HTMLResponse:
        models = services.registry.list_models(me(request))
        head = services.audit.latest_tree_head()
        events = services.audit_views.events(me(request), limit=8)
        return render(
            request,
            "home.html",
            "home",
            models=models,
            version_count=sum(len(m.versions) for m in models),
            tree_head=head,
            tree_size=services.audit.tree_size(),
            events=events,
        )

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    def models_page(request: Request) -> HTMLResponse:
        return render(request, "models.html", "models", models=services.registry.list_models(me(request)))

    @app.get("/models/{name}", response_class=HTMLResponse, include_in_schema=False)
    def model_page(request: Request, name: str) -> HTMLResponse:
        model = services.registry.get_model(name, me(request))
        return render(request, "model.html", "models", model=model)

    @app.get("/models/{name}/versions/{version}", response_class=HTMLResponse, include_in_schema=False)
    def version_page(request: Request, name: str, version: str) -> HTMLResponse:
        found = services.registry.get_version(name, version, me(request))
        return render(
            request, "version.html", "models", v=found, classification=services.registry.classification(found)
        )

    @app.get("/models/{name}/versions/{version}/risk", response_class=HTMLResponse, include_in_schema=False)
    def risk_page(request: Request, name: str, version: str, profile_version: int | None = None) -> HTMLResponse:
        viewer_caller = me(request)
        found = services.registry.get_version(name, version, viewer_caller)
        profile = services.risk.profile(found.reference, profile_version, caller=viewer_caller)
        policy = services.release.active_policy()
        lines = policy_lines(policy)
        return render(
            request,
            "risk.html",
            "models",
            v=found,
            profile=profile,
            charts=risk_charts(profile, lines),
            policy=policy,
            lines=lines,
            limits=limits(profile, lines),
            jailbreak_counts={e["id"]: jailbreak_count(e["summary"]) for e in profile["evidence"]},
            p_meaning=P_VALUE_MEANING,
        )

    @app.get("/registry", response_class=HTMLResponse, include_in_schema=False)
    def registry_page(request: Request) -> HTMLResponse:
        entries = services.release.public_registry()
        return render(request, "registry.html", "registry", entries=entries, policy=services.release.active_policy())

    @app.get("/registry/{name}/{version}", response_class=HTMLResponse, include_in_schema=False)
    def release_page(request: Request, name: str, version: str) -> HTMLResponse:
        """A release's public page: only public entries have one (an upper-tier version reads like none)."""
        entry = next((e for e in services.release.public_registry() if e["model"] == f"{name}:{version}"), None)
        if entry is None:
            raise NotFound(f"no public entry for {name}:{version}", hint="see the public registry at /registry")
        timeline = services.release.timeline(SYSTEM, f"{name}:{version}")  # a public entry: its plan is public
        return render(
            request,
            "release.html",
            "registry",
            entry=entry,
            model_name=name,
            model_version=version,
            controls=entry.get("controls"),
            timeline=timeline,
        )

    @app.get("/release", response_class=HTMLResponse, include_in_schema=False)
    def board_page(request: Request) -> Response:
        """The proposals the signed-in person may see, with the vote form where they may vote."""
        caller = me(request)
        if not caller.session:
            return back("/login?next=/release")
        view = services.release.board_view(caller)
        rules = services.release.rules
        return render(
            request,
            "board.html",
            "release",
            proposals=view["proposals"],
            director=bool(view["versions"]),
            versions=view["versions"],
            tiers=[t.value for t in Tier],
            open_quorum=rules.open_quorum,
            cooling_days=f"{rules.cooling_off.total_seconds() / 86400:g}",
        )

    @app.post("/release/proposals", include_in_schema=False)
    def propose_form(
        request: Request,
        model: str = Form(...),
        tier: str = Form(...),
        rationale: str = Form(""),
        stages: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        check_csrf(request, csrf)
        planned = [parse_stage(line) for line in stages.splitlines() if line.strip()]
        try:
            chosen = Tier.parse(tier)
        except ValueError as error:
            raise InvalidInput(str(error), hint="choose a tier from the list") from None
        services.release.propose(me(request), model, chosen, rationale, stages=planned)
        return back("/release")

    @app.post("/release/proposals/{proposal_id}/vote", include_in_schema=False)
    def vote_form(
        request: Request, proposal_id: str, approve: str = Form(...), reason: str = Form(""), csrf: str = Form("")
    ) -> Response:
        check_csrf(request, csrf)
        services.release.vote(me(request), proposal_id, approve == "yes", reason)
        return back("/release")

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(request: Request, before: int | None = None, limit: int = 50) -> HTMLResponse:
        limit = max(1, min(limit, 500))
        caller = me(request)
        events = services.audit_views.events(caller, limit=limit, before=before)
        older = events[-1]["leaf_index"] if events and events[-1]["leaf_index"] > 0 else None
        return render(
            request,
            "audit.html",
            "audit",
            events=events,
            private=services.audit_views.may_read_private(caller),
            tree_head=services.audit.latest_tree_head(),
            tree_size=services.audit.tree_size(),
            older=older,
            before=before,
            limit=limit,
        )

    @app.get("/audit/events/{leaf_index}", response_class=HTMLResponse, include_in_schema=False)
    def event_page(request: Request, leaf_index: int) -> HTMLResponse:
        proof = services.audit_views.newest_inclusion_proof(me(request), leaf_index)
        event = proof.event
        disclosed = event.get("disclosed") or {}
        details = json.dumps(event["details"], indent=2, sort_keys=True, ensure_ascii=False)
        return render(
            request,
            "event.html",
            "audit",
            event=event,
            details=details,
            disclosed={path: shown_text(item["value"]) for path, item in disclosed.items()},
            proof=proof,
            proof_url=f"/api/v1/audit/proofs/inclusion/{leaf_index}?tree_size={proof.tree_size}",
        )
