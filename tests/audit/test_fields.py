"""The classification table knows every event src/ emits: each action, and each details field.

Every `audit.append(...)` / `audit.record(...)` call in src/ is read with `ast`: its action and
the keys of its details are resolved from literals, from the enclosing function's call sites (an
action or details passed in as a parameter), from local assignments and from functions returning
a dict literal. What cannot be resolved statically is listed in UNRESOLVED below, by hand, and
the test fails when a call is neither resolvable nor listed: a new event must be classified.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.audit.domain import FAIL_CLOSED, Visibility
from aperture.audit.fields import CLASSIFICATION, fields_of

SRC = Path(__file__).resolve().parents[2] / "src" / "aperture"

# Emitters whose action or details are built where `ast` cannot follow: (file, function) ->
# {action: details keys}. Keep each entry next to what the code does.
UNRESOLVED: dict[tuple[str, str], dict[str, set[str]]] = {
    # f"licensing.application.{after.status.value}": what `propose` can lead to (decide()).
    ("licensing/service.py", "decide"): {
        "licensing.application.approval_proposed": {"outcome"},
        "licensing.application.approved": {"outcome"},
        "licensing.application.rejected": {"outcome"},
        "licensing.application.more_information": {"outcome"},
    },
    # f"licensing.licence.{event.value}" with details built up in the function.
    ("licensing/service.py", "_apply"): {
        f"licensing.licence.{event}": {
            "from",
            "to",
            "reason",
            "receivables",
            "tokens_cancelled",
            "receivables_cancelled",
        }
        for event in ("activate", "suspend", "reinstate", "revoke", "expire")
    },
    # f"licensing.diffusion.{target}", target in ("open", "partners").
    ("licensing/service.py", "diffuse"): {
        f"licensing.diffusion.{target}": {"decision_id", "copies", "live_licences"} for target in ("open", "partners")
    },
    # f"security.weights.{grant.action.value}": the weight actions a grant can be for.
    ("security/service.py", "redeem"): {
        f"security.weights.{action}": {"grant_id", "files", "bytes", "origin", "hub"}
        for action in ("download", "export", "copy_to_hub")
    },
    # record_evidence(caller, version, evidence, action) is called from risk/tamper.py.
    ("risk/service.py", "record_evidence"): {"risk.tamper.completed": {"evidence", "title", "profile_version"}},
    # limits.as_dict() (gateway.domain.Limits).
    ("gateway/service.py", "set_limits"): {
        "gateway.limits.set": {"requests_per_minute", "tokens_per_minute", "monthly_tokens", "max_tokens"}
    },
    # terms.as_dict() is one details field, `terms`: the dict literal resolves it.
    # _require_download(..., why) passes its action on to _refused: the token and download refusals.
    ("licensing/service.py", "_require_download"): {
        "licensing.token.refused": {"why"},
        "licensing.download.refused": {"why"},
    },
    # One count per kind of leftover removed (LeftoverKind), and the bytes.
    ("registry/service.py", "collect_garbage"): {
        "registry.garbage_collected": {"temporary", "blob", "sealed", "bytes"}
    },
    # raid._context.record(ctx, connection, actor, incident, action, details) is called from the
    # desk's use-case modules, each with its own action and a details builder.
    ("raid/_context.py", "record"): {
        "raid.report.received": {"attachments", "bindings", "source", "tlp"},
        "raid.report.information_added": {"attachments", "characters"},
        "raid.incident.assessed": {
            "avid",
            "dual_use",
            "member_state",
            "reportable",
            "risk_domain",
            "sector",
            "serious",
            "severity",
        },
        "raid.incident.assigned": {"assignee", "previous"},
        "raid.incident.aware_set": {"aware_at", "previous"},
        "raid.incident.facts_recorded": {"fields"},
        "raid.incident.forwarded": {"body", "form", "message", "required_by_law", "route", "tlp", "with_identity"},
        "raid.incident.moved": {"from", "into", "move", "to"},
        "raid.incident.routed": {"obligations", "routes", "table_version"},
        "raid.incident.shared": {"from", "organisations", "principals", "tlp"},
        "raid.obligation.met": {"clock", "kind", "late", "obligation"},
        "raid.advisory.drafted": {"advisory", "embargo_until", "parties", "policy"},
        "raid.advisory.extended": {"advisory", "embargo_until"},
        "raid.advisory.early_publication_decided": {"advisory"},
        "raid.advisory.notified": {"advisory", "messages", "parties"},
        "raid.advisory.published": {"advisory", "early"},
    },
    # The refusal summaries (audit.service._refusal_summary).
    ("audit/service.py", "_sum_refusals"): {
        "audit.refusals": {
            "window_start",
            "window_s",
            "total",
            "by_reason",
            "origins",
            "capped",
            "by_origin",
            "by_subject",
        }
    },
}


def _is_audit_call(node: ast.Call, file: str) -> bool:
    func = node.func
    if not isinstance(func, ast.Attribute) or func.attr not in ("append", "record"):
        return False
    if not any(keyword.arg == "action" for keyword in node.keywords):
        return False
    target = func.value
    if isinstance(target, ast.Attribute):
        return "audit" in target.attr
    if isinstance(target, ast.Name):
        return "audit" in target.id or (file == "audit/service.py" and target.id == "self")
    return False


# A function parameter bound at one call site: the argument and the function it is written in.
Binding = tuple[ast.expr | None, ast.FunctionDef]


class Module:
    def __init__(self, path: Path) -> None:
        self.file = path.relative_to(SRC).as_posix()
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.all_functions = [n for n in ast.walk(self.tree) if isinstance(n, ast.FunctionDef)]
        self.functions: dict[str, ast.FunctionDef] = {}
        for function in self.all_functions:
            self.functions.setdefault(function.name, function)
        self.constants: dict[str, ast.expr] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.constants[node.targets[0].id] = node.value
        # Names imported from another aperture module: their module-level string constants count.
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aperture."):
                source = SRC.joinpath(*node.module.split(".")[1:]).with_suffix(".py")
                if not source.is_file():
                    continue
                for top in ast.parse(source.read_text(encoding="utf-8")).body:
                    if (
                        isinstance(top, ast.Assign)
                        and len(top.targets) == 1
                        and isinstance(top.targets[0], ast.Name)
                        and isinstance(top.value, ast.Constant)
                        and any(alias.name == top.targets[0].id and alias.asname is None for alias in node.names)
                    ):
                        self.constants.setdefault(top.targets[0].id, top.value)

    def calls_of(self, name: str) -> Iterator[ast.Call]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                if called == name:
                    yield node

    @staticmethod
    def parameters(function: ast.FunctionDef) -> list[str]:
        names = [a.arg for a in function.args.args]
        return names[1:] if names and names[0] in ("self", "cls") else names

    def argument(self, call: ast.Call, function: ast.FunctionDef, parameter: str) -> ast.expr | None:
        names = self.parameters(function)
        for keyword in call.keywords:
            if keyword.arg == parameter:
                return keyword.value
        position = names.index(parameter)
        if position < len(call.args):
            return call.args[position]
        defaults = function.args.defaults
        offset = len(names) - len(defaults)
        return defaults[position - offset] if position >= offset else None

    def strings(self, node: ast.expr | None, function: ast.FunctionDef, env: dict[str, Binding]) -> set[str] | None:
        """The values a string expression can take; None when unknown."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            body, orelse = self.strings(node.body, function, env), self.strings(node.orelse, function, env)
            return None if body is None or orelse is None else body | orelse
        if isinstance(node, ast.Name):
            if node.id in env:
                argument, caller = env[node.id]
                return self.strings(argument, caller, {})
            if node.id in self.constants:
                return self.strings(self.constants[node.id], function, {})
            local = self._local(function, node.id)
            if local is not None:
                return self.strings(local, function, env)
        return None

    def keys(self, node: ast.expr | None, function: ast.FunctionDef, env: dict[str, Binding]) -> set[str] | None:
        """The keys a details expression can have; None when unknown."""
        if node is None or (isinstance(node, ast.Constant) and node.value is None):
            return set()
        if isinstance(node, ast.Dict):
            found: set[str] = set()
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    spread = self.keys(value, function, env)
                    if spread is None:
                        return None
                    found |= spread
                elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                    found.add(key.value)
                else:
                    return None
            return found
        if isinstance(node, ast.Name):
            if node.id in env:
                argument, caller = env[node.id]
                return self.keys(argument, caller, {})
            local = self._local(function, node.id)
            if local is not None:
                base = self.keys(local, function, env)
                return None if base is None else base | self._subscripts(function, node.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions:
            helper = self.functions[node.func.id]
            returned = [n.value for n in ast.walk(helper) if isinstance(n, ast.Return) and n.value is not None]
            if len(returned) == 1:
                return self.keys(returned[0], helper, {})
        return None

    def _local(self, function: ast.FunctionDef, name: str) -> ast.expr | None:
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return node.value
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
                return node.value
        return None

    def _subscripts(self, function: ast.FunctionDef, name: str) -> set[str]:
        found = set()
        for node in ast.walk(function):
            for target in node.targets if isinstance(node, ast.Assign) else ():
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == name
                    and isinstance(target.slice, ast.Constant)
                    and isinstance(target.slice.value, str)
                ):
                    found.add(target.slice.value)
        return found

    def _enclosing(self, target: ast.AST) -> ast.FunctionDef:
        innermost = None
        for function in self.all_functions:
            if any(node is target for node in ast.walk(function)):
                innermost = function  # ast.walk is breadth-first: inner functions come later
        assert innermost is not None
        return innermost

    def events(self, found: dict[str, set[str]], unresolved: list[str]) -> None:
        """Add every (action, details keys) this module emits to `found`; what cannot be read
        statically (and is not in UNRESOLVED) to `unresolved`."""
        for node in ast.walk(self.tree):
            if not (isinstance(node, ast.Call) and _is_audit_call(node, self.file)):
                continue
            function = self._enclosing(node)
            keywords = {k.arg: k.value for k in node.keywords}
            action, details = keywords.get("action"), keywords.get("details")
            pairs = self._pairs(function, action, details, node.lineno, unresolved)
            for actions, fields in pairs:
                for name in actions:
                    found.setdefault(name, set()).update(fields)

    def _pairs(
        self,
        function: ast.FunctionDef,
        action: ast.expr | None,
        details: ast.expr | None,
        line: int,
        unresolved: list[str],
    ) -> list[tuple[set[str], set[str]]]:
        listed = UNRESOLVED.get((self.file, function.name))
        if listed is not None:
            return [({name}, fields) for name, fields in listed.items()]
        actions, fields = self.strings(action, function, {}), self.keys(details, function, {})
        if actions is not None and fields is not None:
            return [(actions, fields)]
        # The action or the details come in as parameters: read them at each call site.
        pairs: list[tuple[set[str], set[str]]] = []
        calls = list(self.calls_of(function.name))
        for call in calls:
            caller = self._enclosing(call)
            env = {name: (self.argument(call, function, name), caller) for name in self.parameters(function)}
            actions, fields = self.strings(action, function, env), self.keys(details, function, env)
            listed = UNRESOLVED.get((self.file, caller.name))
            if actions is not None and fields is not None:
                pairs.append((actions, fields))
            elif listed is not None:  # the caller passes what it builds where ast cannot follow
                pairs.extend(({name}, names) for name, names in listed.items())
            else:
                unresolved.append(f"{self.file}:{call.lineno} ({caller.name}, calling {function.name})")
        if not calls:
            unresolved.append(f"{self.file}:{line} ({function.name})")
        return pairs


def emitted() -> dict[str, set[str]]:
    """Every action src/ emits, with every details field it can carry."""
    found: dict[str, set[str]] = {}
    unresolved: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        Module(path).events(found, unresolved)
    assert not unresolved, (
        "audit events whose action or details cannot be read statically: classify them in "
        "aperture/audit/fields.py and list them in UNRESOLVED here: " + ", ".join(unresolved)
    )
    return found


def test_every_emitted_action_and_field_is_classified() -> None:
    events = emitted()
    assert len(events) > 60  # the walk found the emitters (a broken walk must not pass)
    unknown_actions = sorted(action for action in events if action not in CLASSIFICATION)
    assert unknown_actions == [], f"add these actions to aperture/audit/fields.py: {unknown_actions}"
    unknown_fields = sorted(
        f"{action}.{name}"
        for action, names in events.items()
        for name in names
        if name not in CLASSIFICATION[action].details
    )
    assert unknown_fields == [], f"classify these details fields in aperture/audit/fields.py: {unknown_fields}"


def test_the_table_names_no_action_that_is_not_emitted() -> None:
    """Stale rows hide mistakes; the two events written before refusals were counted stay,
    because stored version 1 and 2 events still carry them."""
    kept = {"access.key.refused", "access.login.failed"}
    stale = sorted(set(CLASSIFICATION) - set(emitted()) - kept)
    assert stale == []


def test_unknown_actions_and_fields_fail_closed() -> None:
    assert fields_of("no.such.action") is FAIL_CLOSED
    assert FAIL_CLOSED.actor is FAIL_CLOSED.resource is Visibility.INTERNAL
    assert fields_of("release.decided").of("details.never_declared") is Visibility.INTERNAL


def test_people_are_never_public() -> None:
    """Actors are people except a few fixed service names; addresses and principals never show."""
    service_actors = {"instance.initialised", "audit.refusals", "security.alert.raised", "gateway.alert.raised"}
    service_actors |= {"licensing.master_secret.created"}
    for action, classes in CLASSIFICATION.items():
        if action not in service_actors:
            assert classes.actor is not Visibility.PUBLIC, action
        for name in ("origin", "principal", "custodians", "approvers", "accused", "by_origin"):
            assert classes.details.get(name, Visibility.INTERNAL) is Visibility.INTERNAL, f"{action}.{name}"


@pytest.mark.parametrize("action", sorted(CLASSIFICATION))
def test_what_names_a_model_version_is_withheld_in_upper_tier_events(action: str) -> None:
    classes = CLASSIFICATION[action]
    for name in ("model", "version_id", "model_id", "label", "headline", "manifest_digest"):
        if name in classes.details:
            assert classes.details[name] is not Visibility.PUBLIC, f"{action}.{name}"
