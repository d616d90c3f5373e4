"""`aperture keys ...`: issue, list and revoke API keys."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from aperture.access.domain import (
    SYSTEM,
    Action,
    ApiKey,
    AssetKind,
    AssetRef,
    Organisation,
    OrganisationKind,
    PrincipalKind,
    Role,
    RuleOfLaw,
    State,
    StateKind,
    Vetting,
    parse_level,
)
from aperture.cli_support import command_errors, out_console, parse_expiry, print_json, require_initialised, state
from aperture.core.errors import InvalidInput

app = typer.Typer(help="API keys: issue, list, revoke.", no_args_is_help=True)


@app.command("issue")
@command_errors
def issue(
    ctx: typer.Context,
    name: str = typer.Option(..., help="What the key is for."),
    principal: str = typer.Option(..., help="Who acts with it (a person or service account)."),
    role: list[str] = typer.Option(["researcher"], help="Role(s); repeat the option for several."),
    expires: str | None = typer.Option(None, help="Expiry as ISO 8601 UTC, e.g. 2027-01-01T00:00:00Z."),
    scope: list[str] = typer.Option([], help="Limit the key to these actions (repeat), e.g. view, download."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Issue a key as the local operator (recorded as issued by `system`). The key text is shown once.

    Over the API a key for someone else takes two administrators (POST /api/v1/key-requests)."""
    services = state(ctx).services
    require_initialised(services)
    try:
        roles = tuple(Role(value) for value in role)
    except ValueError as error:
        raise InvalidInput(str(error), hint="roles: " + ", ".join(r.value for r in Role)) from None
    issued = services.access.issue_key(
        SYSTEM, name=name, principal=principal, roles=roles, expires_at=parse_expiry(expires), scopes=scope or None
    )
    if as_json:
        print_json({**_key_json(issued.key), "key": issued.text})
    else:
        out_console.print(f"key id: {issued.key.key_id}\nkey (shown once): [bold]{issued.text}[/]")


def _key_json(k: ApiKey) -> dict[str, Any]:
    return {
        "key_id": k.key_id,
        "name": k.name,
        "principal": k.principal,
        "roles": [r.value for r in k.roles],
        "scopes": None if k.scopes is None else list(k.scopes),
        "created_at": k.created_at.isoformat(),
        "expires_at": k.expires_at.isoformat() if k.expires_at else None,
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        "issued_by": list(k.issued_by),
    }


@app.command("list")
@command_errors
def list_keys(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List keys (never their secrets)."""
    services = state(ctx).services
    require_initialised(services)
    keys = services.access.list_keys(SYSTEM)
    if as_json:
        print_json([_key_json(k) for k in keys])
        return
    table = Table("key id", "name", "principal", "roles", "scopes", "issued by", "state")
    for k in keys:
        scopes = "all" if k.scopes is None else ",".join(k.scopes)
        state_text = "revoked" if k.revoked_at else "active"
        table.add_row(
            k.key_id, k.name, k.principal, ",".join(k.roles), scopes, ", ".join(k.issued_by) or "its holder", state_text
        )
    out_console.print(table)


@app.command("revoke")
@command_errors
def revoke(ctx: typer.Context, key_id: str = typer.Argument(..., help="The 8-hex key id.")) -> None:
    """Revoke a key at once."""
    services = state(ctx).services
    require_initialised(services)
    services.access.revoke_key(SYSTEM, key_id)
    out_console.print(f"revoked {key_id}")


# --- `aperture access ...`: principals, programmes, classification, explain ---------------------

access_app = typer.Typer(
    help="Members, organisations, people, programmes, classification, and why a decision is what it is.",
    no_args_is_help=True,
)


def _choice(enum: type[Any], value: str, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a {what}", hint=f"{what}: " + ", ".join(e.value for e in enum)) from None


def _roles(values: list[str]) -> tuple[Role, ...]:
    return tuple(_choice(Role, value, "role") for value in values)


@access_app.command("add-state")
@command_errors
def add_state(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="ISO 3166-1 alpha-2 code, e.g. FR."),
    name: str = typer.Option(..., help="The state's name."),
    kind: str = typer.Option("member", help="member or partner."),
    eu: bool = typer.Option(True, "--eu/--non-eu", help="EU member state or not."),
    cyber_assurance: str = typer.Option(
        "SL2", help="Cybersecurity assurance: the SL its infrastructure is assessed at."
    ),
    rule_of_law: str = typer.Option("adequate", help="adequate, conditional or inadequate."),
) -> None:
    """Record (or update) a member or partner state."""
    services = state(ctx).services
    require_initialised(services)
    saved = services.access.save_state(
        SYSTEM,
        State(
            code,
            name,
            _choice(StateKind, kind, "state kind"),
            eu,
            parse_level(cyber_assurance),
            _choice(RuleOfLaw, rule_of_law, "rule-of-law assessment"),
        ),
    )
    out_console.print(f"state {saved.code} ({saved.kind.value}) saved")


@access_app.command("add-organisation")
@command_errors
def add_organisation(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Short name, e.g. inria."),
    title: str = typer.Option(..., help="Full name."),
    kind: str = typer.Option(..., help="academic, company, public_body or spin_off."),
    state_code: str = typer.Option(..., "--state", help="The state it is established in (code)."),
    parent: str | None = typer.Option(None, help="Parent company or body."),
    foreign_control: str | None = typer.Option(None, help="State code of a controlling party outside the members."),
) -> None:
    """Record (or update) an organisation."""
    services = state(ctx).services
    require_initialised(services)
    organisation = Organisation(
        name, title, _choice(OrganisationKind, kind, "organisation kind"), state_code, parent, foreign_control
    )
    services.access.save_organisation(SYSTEM, organisation)
    out_console.print(f"organisation {name} saved")


@access_app.command("add-programme")
@command_errors
def add_programme(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Short name, e.g. frontier."),
    title: str = typer.Option("", help="Full name."),
) -> None:
    """Create a research programme (the need-to-know group of upper-tier assets)."""
    services = state(ctx).services
    require_initialised(services)
    services.access.add_programme(SYSTEM, name, title)
    out_console.print(f"programme {name} created")


@access_app.command("add-person")
@command_errors
def add_person(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Login name, e.g. alice."),
    display_name: str = typer.Option("", help="Full name."),
    organisation: str | None = typer.Option(None, help="Organisation (short name)."),
    clearance: str = typer.Option("SL1", help="SL1 to SL5 (capped by the vetting)."),
    vetting: str = typer.Option("none", help="none, baseline, security_check, enhanced or strategic."),
    role: list[str] = typer.Option([], help="Role (repeat)."),
    programme: list[str] = typer.Option([], help="Programme membership (repeat)."),
    service: bool = typer.Option(False, "--service", help="A service account rather than a person."),
) -> None:
    """Add a person or service account with clearance, roles and programmes."""
    services = state(ctx).services
    require_initialised(services)
    added = services.access.add_principal(
        SYSTEM,
        name,
        kind=PrincipalKind.SERVICE if service else PrincipalKind.PERSON,
        display_name=display_name,
        organisation=organisation,
        clearance=parse_level(clearance),
        vetting=_choice(Vetting, vetting, "vetting level"),
        roles=_roles(role),
        programmes=programme,
    )
    out_console.print(f"{added.kind.value} {added.name} added: clearance {added.clearance}")


@access_app.command("update")
@command_errors
def update_person(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The principal."),
    clearance: str | None = typer.Option(None, help="New clearance."),
    vetting: str | None = typer.Option(None, help="New vetting level."),
    role: list[str] = typer.Option([], help="Replace the roles (repeat)."),
    programme: list[str] = typer.Option([], help="Replace the programmes (repeat)."),
    disable: bool | None = typer.Option(None, "--disable/--enable", help="Disable or enable the principal."),
) -> None:
    """Change a principal's clearance, vetting, roles, programmes or disable it (ends its sessions)."""
    services = state(ctx).services
    require_initialised(services)
    changed = services.access.update_principal(
        SYSTEM,
        name,
        clearance=None if clearance is None else parse_level(clearance),
        vetting=None if vetting is None else _choice(Vetting, vetting, "vetting level"),
        roles=_roles(role) if role else None,
        programmes=programme or None,
        disabled=disable,
    )
    out_console.print(f"{changed.name}: clearance {changed.clearance}, roles {', '.join(changed.roles) or 'none'}")


@access_app.command("set-password")
@command_errors
def set_password(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The person."),
    password: str = typer.Option(
        ..., prompt=True, hide_input=True, confirmation_prompt=True, help="At least 12 characters."
    ),
) -> None:
    """Set a person's UI password (stored as an argon2 hash)."""
    services = state(ctx).services
    require_initialised(services)
    services.access.set_password(SYSTEM, name, password)
    out_console.print(f"password set for {name}")


@access_app.command("list")
@command_errors
def list_access(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """States, organisations, programmes and principals."""
    services = state(ctx).services
    require_initialised(services)
    access = services.access
    principals = access.list_principals()
    if as_json:
        print_json(
            {
                "states": [
                    {
                        "code": s.code,
                        "name": s.name,
                        "kind": s.kind.value,
                        "eu": s.eu,
                        "cyber_assurance": str(s.cyber_assurance),
                        "rule_of_law": s.rule_of_law.value,
                    }
                    for s in access.list_states()
                ],
                "organisations": [
                    {
                        "name": o.name,
                        "title": o.title,
                        "kind": o.kind.value,
                        "state": o.state,
                        "parent": o.parent,
                        "foreign_control": o.foreign_control,
                    }
                    for o in access.list_organisations()
                ],
                "programmes": [{"name": p.name, "title": p.title} for p in access.list_programmes()],
                "principals": [
                    {
                        "name": p.name,
                        "kind": p.kind.value,
                        "organisation": p.organisation,
                        "clearance": str(p.clearance),
                        "vetting": p.vetting.value,
                        "roles": [r.value for r in p.roles],
                        "programmes": list(p.programmes),
                        "disabled": p.disabled,
                    }
                    for p in principals
                ],
            }
        )
        return
    table = Table("principal", "kind", "organisation", "clearance", "roles", "programmes")
    for p in principals:
        table.add_row(
            p.name + (" (disabled)" if p.disabled else ""),
            p.kind.value,
            p.organisation or "",
            str(p.clearance),
            ", ".join(p.roles),
            ", ".join(p.programmes),
        )
    out_console.print(table)


@access_app.command("assets")
@command_errors
def list_assets(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every classified asset with its level and programme (the operator's view)."""
    services = state(ctx).services
    require_initialised(services)
    found = services.access.classifications(SYSTEM)
    if as_json:
        print_json(
            [
                {
                    "asset": c.asset.uid,
                    "label": c.label,
                    "level": str(c.level),
                    "programme": c.programme,
                    "canary": c.canary,
                }
                for c in found
            ]
        )
        return
    table = Table("asset", "label", "level", "programme", "canary")
    for c in found:
        table.add_row(c.asset.uid, c.label, str(c.level), c.programme or "", "yes" if c.canary else "")
    out_console.print(table)


@access_app.command("explain")
@command_errors
def explain(
    ctx: typer.Context,
    principal: str = typer.Argument(..., help="Who, e.g. alice."),
    action: str = typer.Argument(..., help="view, download, export, copy_to_hub, approve_grant, ..."),
    resource: str = typer.Argument(
        "instance", help="NAME:VERSION of a model version, KIND:ID of another asset, or `instance`."
    ),
    key: str | None = typer.Option(
        None, "--key", help="Ask with your API key (apk_...): your own decisions, or anyone's for the security desk."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Why PRINCIPAL may or may not do ACTION on RESOURCE: the deciding Cedar policies and the facts.

    Without --key the local operator asks (and sees every asset). With a key, naming an asset you
    may not see reads exactly like naming one that does not exist."""
    services = state(ctx).services
    require_initialised(services)
    caller = SYSTEM if key is None else services.access.authenticate(key.strip())
    chosen = _choice(Action, action, "action")
    asset: AssetRef | None = None
    if resource != "instance":
        kind, _, rest = resource.partition(":")
        if kind in {k.value for k in AssetKind}:
            asset = AssetRef(AssetKind(kind), rest)
        else:
            version = services.registry.find_version(resource, caller)
            asset = AssetRef(AssetKind.MODEL_VERSION, version.id)
    decision = services.access.explain(caller, principal, chosen, asset)
    if as_json:
        print_json(
            {
                "allowed": decision.allowed,
                "reasons": list(decision.reasons),
                "explanation": list(decision.explanation),
                "policy_version": decision.policy_version,
            }
        )
    else:
        verdict = "[green]ALLOW[/]" if decision.allowed else "[red]DENY[/]"
        out_console.print(f"{verdict}  {principal} {chosen.value} {resource}")
        for line in decision.explanation:
            out_console.print(f"  {line}", highlight=False, soft_wrap=True)
        out_console.print(f"  policies {decision.policy_version}", highlight=False)
    if not decision.allowed:
        raise typer.Exit(6)
