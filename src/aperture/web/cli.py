"""`aperture serve` and `aperture demo`."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aperture.cli_support import command_errors, err_console, out_console, state
from aperture.core.errors import Conflict, InvalidInput
from aperture.registry.cli import BarProgress

if TYPE_CHECKING:
    from aperture.bootstrap import Services

DEMO_HOME = Path(".aperture-demo")
DEMO_PASSWORD = "demo password, not for production"  # noqa: S105 - printed by the demo on purpose
SECURE_NAME = "smollm2-135m-frontier"
CANARY_NAME = "frontier-decoy"
DEMO_MARKER = "demo-instance"


def serve_app(services: Any, host: str, port: int) -> None:
    import uvicorn

    from aperture.core.logging import configure_logging
    from aperture.web.app import create_app

    configure_logging(services.settings.log_level, services.settings.log_format)
    app = create_app(services)
    uvicorn.run(app, host=host, port=port, log_level=services.settings.log_level.lower(), access_log=False)


@command_errors
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Bind address (default APERTURE_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default APERTURE_PORT, 8000)."),
) -> None:
    """Serve the web UI, the API at /api/v1, the gateway at /v1, /healthz and /metrics."""
    from aperture.bootstrap import require_initialised

    services = state(ctx).services
    require_initialised(services)
    settings = services.settings
    bind_host, bind_port = host or settings.host, settings.port if port is None else port
    if bind_host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning[/]: serving on {bind_host}: put TLS in front of it")
    out_console.print(f"Aperture on http://{bind_host}:{bind_port}  (API docs: /api/v1/docs)")
    serve_app(services, bind_host, bind_port)


@command_errors
def run_gateway(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Bind address (default APERTURE_HOST)."),
    port: int | None = typer.Option(None, help="Port (default APERTURE_PORT)."),
) -> None:
    """Without a subcommand: serve the gateway alone (/v1 and /healthz), to scale it out behind a load balancer."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from aperture.bootstrap import require_initialised
    from aperture.core.logging import configure_logging
    from aperture.gateway.http import create_gateway_app

    services = state(ctx).services
    require_initialised(services)
    settings = services.settings
    bind_host, bind_port = host or settings.host, settings.port if port is None else port
    configure_logging(settings.log_level, settings.log_format)
    out_console.print(f"Aperture gateway on http://{bind_host}:{bind_port}/v1")
    uvicorn.run(
        create_gateway_app(services),
        host=bind_host,
        port=bind_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _command_name() -> str:
    """`aperture` when it is on PATH, else the path this process was started by (e.g. .venv/bin/aperture)."""
    invoked = Path(sys.argv[0])
    on_path = shutil.which("aperture")
    if on_path and Path(on_path).resolve() == invoked.resolve():
        return "aperture"
    if invoked.name == "aperture" and invoked.exists():
        with contextlib.suppress(ValueError):
            return str(invoked.absolute().relative_to(Path.cwd()))
        return str(invoked.absolute())
    return "aperture"


def _reset_demo_home(home: Path) -> None:
    """A fresh demo instance each run; the converted-model cache survives to save a minute."""
    if not home.exists():
        return
    if not (home / DEMO_MARKER).exists():
        raise Conflict(
            f"{home} exists and is not a demo instance",
            hint="move it away, or pass --home with another directory",
        )
    for child in home.iterdir():
        if child.name in ("cache", DEMO_MARKER):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# The demo's quick look: a spread sample of each suite (items per suite), small enough for a few
# minutes on a laptop CPU; `aperture assess run` without --limit scores everything.
DEMO_SAMPLES = {"wmdp-bio": 64, "wmdp-chem": 32, "wmdp-cyber": 32, "strongreject": 12, "jailbreak": 3, "xstest": 20}
DEMO_TAMPER_ITEMS = 8


def _quick_assessment(services: Services, reference: str) -> int:
    from aperture.access.domain import SYSTEM
    from aperture.risk.cli import ItemProgress, headline_text
    from aperture.risk.scoring import GenerationSettings
    from aperture.risk.service import RunOptions
    from aperture.risk.tamper import TamperRunner

    profile_version = 0
    with ItemProgress() as bar:
        for suite, limit in DEMO_SAMPLES.items():
            options = RunOptions(limit=limit, generation=GenerationSettings(max_new_tokens=48, time_limit_s=60.0))
            outcome = services.risk.run_suite(SYSTEM, reference, suite, options, progress=bar)
            headline = outcome.evidence.headline if outcome.evidence else None
            out_console.print(
                f"  {suite:<13} {headline_text(headline.to_dict() if headline else None)}", highlight=False
            )
            profile_version = outcome.profile_version or profile_version
        evidence, profile_version = TamperRunner(services.risk).run(
            SYSTEM,
            reference,
            "quick",
            ["wmdp-bio", "strongreject"],
            limit=DEMO_TAMPER_ITEMS,
            max_new_tokens=32,
            progress=bar,
        )
    for name, row in evidence.summary["suites"].items():
        out_console.print(
            f"  tamper/{name:<6} worst after {row['cells']} attacks: {headline_text(row['worst'])}", highlight=False
        )
    out_console.print("  (a 135M model: these numbers exercise the pipeline; they bound nothing about larger models)")
    return profile_version


@command_errors
def demo(
    ctx: typer.Context,
    home: Path = typer.Option(DEMO_HOME, help="Where the demo instance lives (recreated each run)."),
    port: int = typer.Option(8000, help="Port; a free one is chosen if it is taken."),
    serve_after: bool = typer.Option(True, "--serve/--no-serve", help="Start the server at the end."),
) -> None:
    """A fresh instance with the bundled model imported, verified and served."""
    from aperture.bootstrap import build_services, init_instance
    from aperture.settings import load_settings

    home = home.absolute()
    _reset_demo_home(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("This directory is recreated by `aperture demo`.\n")
    base = state(ctx).settings
    settings = load_settings(
        home=home,
        database_url=None,
        model_cache=base.model_cache or home / "cache" / "models",
        log_level=base.log_level,
        log_format=base.log_format,
        hash_workers=base.hash_workers,
    )
    services = build_services(settings)
    host = settings.host
    if not _port_free(host, port):
        chosen = _free_port(host)
        err_console.print(f"port {port} is taken; using {chosen}")
        port = chosen
    base_url = f"http://{host}:{port}"

    out_console.rule("1/8  create the instance")
    issued = init_instance(services)
    out_console.print(f"instance in {home}; signing key {services.keys.key_id}")

    out_console.rule("2/8  import the bundled model (SmolLM2-135M-Instruct)")
    with BarProgress("storing") as bar:
        version = services.registry.import_bundled(progress=bar).version
    out_console.print(f"registered {version.reference} ({version.parameter_count:,} parameters)")

    out_console.rule("3/8  verify its files and signature")
    with BarProgress("verifying") as bar:
        report = services.registry.verify_version(version.model_name, version.version, progress=bar)
    out_console.print(f"verified {report.files_checked} files, signature by key {report.signing_key_id}: OK")

    out_console.rule("4/8  security tiers: members, people, a sealed upper-tier version, a canary")
    services, people = _demo_security(services, settings)
    head = services.audit.issue_tree_head()
    out_console.print(f"transparency log: {head.tree_size} events, signed tree head issued")

    ref = version.reference
    out_console.rule("5/8  assess its risks (a documented quick sample of each suite)")
    profile_version = _quick_assessment(services, ref)
    risk_url = f"{base_url}/models/{version.model_name}/versions/{version.version}/risk"
    out_console.print(f"risk profile version {profile_version}: {risk_url}", highlight=False)

    out_console.rule("6/8  decide its release: the policy, a proposal, the board's votes")
    release_url = f"{base_url}/registry/{version.model_name}/{version.version}"
    proposal = _demo_release(services, ref)
    out_console.print(f"public page: {release_url}", highlight=False)
    out_console.rule("7/8  hosted access: the OpenAI-compatible gateway at /v1")
    gateway = demo_gateway(services, version, base_url, organisation="tu-berlin")
    out_console.print(
        f"{ref} is released as hosted and served by the embedded engine; tu-berlin has a gateway key, "
        "limits and a price"
    )

    bearer = f"-H 'Authorization: Bearer {issued.text}'"
    cli = f"APERTURE_HOME={home} {_command_name()}"
    info: dict[str, Any] = {
        "base_url": base_url,
        "home": str(home),
        "admin_key": issued.text,
        "models": [{"name": version.model_name, "version": version.version, "ref": ref, "id": version.id}],
        "urls": {
            "home": f"{base_url}/",
            "models": f"{base_url}/models",
            "model": f"{base_url}/models/{version.model_name}",
            "audit": f"{base_url}/audit",
            "risk": risk_url,
            "registry": f"{base_url}/registry",
            "release": release_url,
            "board": f"{base_url}/release",
            "api_docs": f"{base_url}/api/v1/docs",
            "healthz": f"{base_url}/healthz",
            "metrics": f"{base_url}/metrics",
        },
        "examples": [
            f"curl -s {bearer} {base_url}/api/v1/models",
            f"curl -s {bearer} {base_url}/api/v1/whoami",
            f"curl -s {base_url}/api/v1/audit/tree-head",
            f"{cli} models show {ref}",
            f"{cli} models verify {ref}",
            f"{cli} assess show {ref}",
            f"{cli} assess run {ref} --suite wmdp-bio",
            f"curl -s {bearer} {base_url}/api/v1/models/{version.model_name}/versions/{version.version}/risk-profile",
            f"{cli} release decide {ref}",
            f"{cli} release show {proposal['id']}",
            f"{cli} release report {ref} --format pdf --output release-report.pdf",
            f"curl -s {base_url}/api/v1/registry",
            f"{cli} audit verify",
            f"{cli} audit prove 0",
            gateway["curl"],
            gateway["openai"],
            f"{cli} gateway usage",
        ],
    }
    info["gateway"] = gateway
    info["people"] = people
    info["urls"]["login"] = f"{base_url}/login"
    (home / "demo.json").write_text(json.dumps(info, indent=2) + "\n")

    out_console.rule("8/8  serve")
    out_console.print(f"  web UI        {base_url}/")
    out_console.print(f"  models        {base_url}/models/{version.model_name}")
    out_console.print(f"  audit log     {base_url}/audit")
    out_console.print(f"  registry      {base_url}/registry (public: tiers, reasons, dissent)")
    out_console.print(f"  release page  {release_url}")
    out_console.print(f"  API docs      {base_url}/api/v1/docs")
    out_console.print(
        f"  gateway       {base_url}/v1  (OpenAI-compatible; key {gateway['gateway_key']})", highlight=False
    )
    out_console.print("  admin key     ", end="")
    out_console.print(issued.text, soft_wrap=True, highlight=False)
    out_console.print(f"  sign in       {base_url}/login as alice, bob, sam, carol ... password {DEMO_PASSWORD!r}")
    out_console.print(f"  demo.json     {home / 'demo.json'} (the same, machine-readable)")
    out_console.print("\nTry next:")
    for example in info["examples"]:
        out_console.print(f"  {example}", soft_wrap=True, highlight=False)
    if not serve_after:
        return
    if not _port_free(host, port):
        raise InvalidInput(f"port {port} was taken while preparing", hint="run the demo again")
    out_console.print("\nServing; press Ctrl-C to stop.")
    serve_app(services, host, port)


def _demo_release(services: Services, reference: str) -> dict[str, Any]:
    """The policy decides; Bob (programme director) proposes a staged release; the board votes with reasons."""
    from aperture.access.domain import SYSTEM, Caller
    from aperture.release.domain import Tier
    from aperture.release.service import parse_stage

    decision = services.release.evaluate(SYSTEM, reference)
    out_console.print(f"policy: {decision.summary()}", highlight=False)
    for level in decision.levels:
        shown = level.to_dict()
        out_console.print(f"  {shown['domain']:<22} {shown['level']:<10} {shown['reason']}", highlight=False)

    def person(name: str) -> Caller:
        return Caller(name, services.access.get_principal(name).roles, session=True)

    # The seeds' staged release: hosted now, open once it has run six months without serious incident.
    tier = Tier.HOSTED if not Tier.HOSTED.more_open_than(decision.tier) else decision.tier
    rationale = (
        f"The policy allows up to {decision.tier}: a 135M model at chance on the sampled WMDP items. Start hosted "
        "and open after six months without serious incident, on a fresh assessment."
    )
    stages = [parse_stage("open@180:six months hosted without serious incident; full WMDP sets run")]
    proposal = services.release.propose(person("bob"), reference, tier, rationale, stages=stages)
    votes = [
        ("rhea", True, "Knowledge at chance and a small model: hosted first is proportionate."),
        ("tomas", False, "The samples are small (32-64 items); I would run the full WMDP sets before any release."),
        ("ines", True, "Agree; the dissent's point is a condition of the open stage."),
    ]
    for name, approve, reason in votes:
        if proposal["status"] != "voting":
            break
        proposal = services.release.vote(person(name), proposal["id"], approve, reason)
        out_console.print(f"  {name}: {'approve' if approve else 'reject'} — {reason}", highlight=False)
    status = proposal["status"]
    if status == "cooling-off":
        status += f" until {proposal['cooling_off_until'][:10]} (opening weights is irreversible; it can be challenged)"
    out_console.print(f"decision: {proposal['tier']} ({status}); signed and in the transparency log", highlight=False)
    for stage in proposal["stages"]:
        out_console.print(f"  next stage: {stage['tier']} due {stage['due_at'][:10]} ({stage['condition']})")
    return proposal


DEMO_PROMPT = "What is the capital of France?"


def _python_name() -> str:
    """The interpreter running this, as the user would type it (relative to the current directory if inside it)."""
    executable = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(executable.relative_to(Path.cwd()))
    return str(executable)


def demo_gateway(services: Any, version: Any, base_url: str, *, organisation: str) -> dict[str, str]:
    """Serve a version through the gateway for the demo: released as hosted (when no decision was
    taken yet), bound to the embedded engine, priced and limited; one key for `organisation`.
    Returns the key and a working `curl` and `openai` client example."""
    from aperture.access.domain import SYSTEM
    from aperture.gateway.domain import BackendKind, Limits, ScopeKind
    from aperture.release.domain import Tier

    ref = version.reference
    if services.release.tier_of(version.model_name, version.version) is None:
        services.release.take_effect(version, Tier.HOSTED, "demo-release", actor=SYSTEM.actor)
    services.gateway.bind(SYSTEM, ref, BackendKind.EMBEDDED)
    services.gateway.set_price(SYSTEM, ref, 0.10, 0.30)
    services.gateway.set_limits(
        SYSTEM,
        ScopeKind.ORGANISATION,
        organisation,
        Limits(requests_per_minute=600, tokens_per_minute=200_000, monthly_tokens=10_000_000, max_tokens=512),
    )
    key = services.gateway.issue_key(SYSTEM, organisation=organisation, name="demo").text
    # Greedy (temperature 0): the small model's most likely answer, the same every time.
    body = json.dumps(
        {"model": ref, "messages": [{"role": "user", "content": DEMO_PROMPT}], "max_tokens": 32, "temperature": 0}
    )
    curl = (
        f"curl -s {base_url}/v1/chat/completions -H 'Authorization: Bearer {key}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )
    program = (
        "from openai import OpenAI; "
        f"client = OpenAI(base_url='{base_url}/v1', api_key='{key}'); "
        f"answer = client.chat.completions.create(model='{ref}', "
        f"messages=[{{'role': 'user', 'content': '{DEMO_PROMPT}'}}], max_tokens=32, temperature=0); "
        "print(answer.choices[0].message.content)"
    )
    return {"gateway_key": key, "model": ref, "curl": curl, "openai": f'{_python_name()} -c "{program}"'}


def _demo_security(services: Any, settings: Any) -> tuple[Any, dict[str, Any]]:
    """Members and partners, people with roles, the tier's key split 2-of-3, an SL4 version sealed
    at rest, a canary; then a restart (the tier comes back sealed) and two custodians unseal it."""
    from aperture.access.domain import (
        SYSTEM,
        Caller,
        Organisation,
        OrganisationKind,
        Role,
        RuleOfLaw,
        SecurityLevel,
        State,
        StateKind,
        Vetting,
    )
    from aperture.bootstrap import build_services
    from aperture.ml import bundled

    access = services.access
    for member in (
        State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE),
        State("DE", "Germany", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE),
        State("NO", "Norway", StateKind.PARTNER, False, SecurityLevel.SL4, RuleOfLaw.ADEQUATE),
        State("XY", "Partner Y", StateKind.PARTNER, False, SecurityLevel.SL2, RuleOfLaw.CONDITIONAL),
    ):
        access.save_state(SYSTEM, member)
    for body in (
        Organisation("institute", "The Institute", OrganisationKind.PUBLIC_BODY, "FR"),
        Organisation("tu-berlin", "A Technical University", OrganisationKind.ACADEMIC, "DE"),
        Organisation("nordlab", "Nord Lab", OrganisationKind.ACADEMIC, "NO"),
        Organisation("ycorp", "Y Corp", OrganisationKind.COMPANY, "XY", parent="Y Holdings"),
    ):
        access.save_organisation(SYSTEM, body)
    access.add_programme(SYSTEM, "frontier", "Frontier language models")
    people = {
        "alice": ("Alice Martin", "institute", SecurityLevel.SL4, Vetting.ENHANCED, (Role.RESEARCHER,), ("frontier",)),
        "bob": (
            "Bob Keller",
            "institute",
            SecurityLevel.SL4,
            Vetting.ENHANCED,
            (Role.PROGRAMME_DIRECTOR,),
            ("frontier",),
        ),
        "sam": (
            "Sam Laurent",
            "institute",
            SecurityLevel.SL4,
            Vetting.ENHANCED,
            (Role.SECURITY_OFFICER,),
            ("frontier",),
        ),
        "ada": ("Ada Weber", "tu-berlin", SecurityLevel.SL2, Vetting.BASELINE, (Role.RESEARCHER,), ()),
        "yves": ("Yves Park", "ycorp", SecurityLevel.SL4, Vetting.ENHANCED, (Role.RESEARCHER,), ("frontier",)),
        "rhea": ("Rhea Costa", "institute", SecurityLevel.SL2, Vetting.BASELINE, (Role.RELEASE_BOARD_MEMBER,), ()),
        "tomas": ("Tomas Berg", "nordlab", SecurityLevel.SL2, Vetting.BASELINE, (Role.RELEASE_BOARD_MEMBER,), ()),
        "ines": ("Ines Roy", "tu-berlin", SecurityLevel.SL2, Vetting.BASELINE, (Role.RELEASE_BOARD_MEMBER,), ()),
        "omar": ("Omar Haddad", "institute", SecurityLevel.SL2, Vetting.BASELINE, (Role.RELEASE_BOARD_MEMBER,), ()),
        "carol": ("Carol Dubois", "institute", SecurityLevel.SL1, Vetting.NONE, (Role.KEY_CUSTODIAN,), ()),
        "dave": ("Dave Nilsen", "nordlab", SecurityLevel.SL1, Vetting.NONE, (Role.KEY_CUSTODIAN,), ()),
        "erin": ("Erin Roth", "tu-berlin", SecurityLevel.SL1, Vetting.NONE, (Role.KEY_CUSTODIAN,), ()),
    }
    for name, (display, organisation, clearance, vetting, roles, programmes) in people.items():
        access.add_principal(
            SYSTEM,
            name,
            display_name=display,
            organisation=organisation,
            clearance=clearance,
            vetting=vetting,
            roles=roles,
            programmes=programmes,
        )
        access.set_password(SYSTEM, name, DEMO_PASSWORD)
    out_console.print(f"{len(people)} people in 4 organisations of 2 member and 2 partner states; programme frontier")
    shares = services.security.init_seal(SYSTEM, ["carol", "dave", "erin"], 2)
    out_console.print("upper tier key split 2 of 3; the demo prints the shares (an operator hands them out once):")
    for custodian, share in shares:
        out_console.print(f"  share for {custodian}: {share}", highlight=False, soft_wrap=True)
    directory = bundled.convert_to_safetensors(bundled.find_bundled_gguf(), settings.resolved_model_cache)
    with BarProgress("sealing") as bar:
        secure = services.registry.register(
            SYSTEM,
            directory,
            SECURE_NAME,
            "0.1.0",
            level=SecurityLevel.SL4,
            programme="frontier",
            description="The bundled model, registered in the upper tier: every file encrypted at rest.",
            licence="Apache-2.0",
            progress=bar,
        ).version
        services.registry.register(
            SYSTEM,
            directory,
            CANARY_NAME,
            "2.0-rc1",
            level=SecurityLevel.SL4,
            programme="frontier",
            canary=True,
            description="Frontier checkpoint, release candidate.",
            licence="proprietary",
            progress=bar,
        )
    out_console.print(f"sealed {secure.reference} (SL4, programme frontier) and a canary, {CANARY_NAME}:2.0-rc1")
    services.close()
    services = build_services(settings)  # a restart: the tier key is in no process's memory now
    out_console.print(
        f"after a restart the upper tier is {'sealed' if services.security.seal_status(SYSTEM).sealed else 'open'}"
    )
    for custodian, share in shares[:2]:
        principal = services.access.get_principal(custodian)
        services.security.present_share(Caller(custodian, principal.roles, session=True), share)
        out_console.print(f"  {custodian} presented a share")
    report = services.registry.verify_version(SECURE_NAME, "0.1.0")
    out_console.print(f"unsealed; {secure.reference}: {report.files_checked} files decrypted and verified")
    return services, {
        name: {"password": DEMO_PASSWORD, "roles": [r.value for r in spec[4]]} for name, spec in people.items()
    } | {"shares": {custodian: share for custodian, share in shares}}
