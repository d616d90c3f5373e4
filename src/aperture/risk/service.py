"""Risk assessment use cases: run suites (resumably), import evidence, attach findings, build profiles."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection

from aperture.access.domain import Action, Caller
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.errors import (
    Conflict,
    Forbidden,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    TooLarge,
)
from aperture.core.ids import new_id
from aperture.registry.domain import ModelVersion
from aperture.registry.service import RegistryService, version_asset
from aperture.risk import store
from aperture.risk.datasets import DataDirectory
from aperture.risk.domain import (
    JAILBREAK_SET_VERSION,
    MAX_LOG_JSON_BYTES,
    SUITES,
    Estimate,
    Evidence,
    EvidenceKind,
    Item,
    ItemResult,
    ParsedLog,
    RiskDomain,
    Safeguard,
    Suite,
    SuiteKind,
    build_profile,
    estimate,
    find_suite,
    map_task,
    parse_inspect_log,
    parse_lm_eval_results,
    sample_items,
    summarise,
)
from aperture.risk.engine import Engine
from aperture.risk.providers import openai_engine, validate_engine_spec, validate_judge_spec
from aperture.risk.scoring import GenerationSettings, Judge, expand_items, order_for_batching, score_chunk
from aperture.vault.service import VaultService

CHUNK_ITEMS = {"knowledge": 64, "generative": 16}
MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024


class ProgressSink(Protocol):
    def start(self, label: str, total: int, done: int) -> None: ...

    def advance(self, count: int) -> None: ...

    def note(self, message: str) -> None: ...


EngineProvider = Callable[[Path, str], Engine]


class ChunkRunner(Protocol):
    """Scores pending chunks somewhere (this process, or Ray workers), yielding each as it completes."""

    def __call__(
        self,
        model_dir: Path,
        version: ModelVersion,
        suite: Suite,
        chunks: Sequence[tuple[int, list[Item]]],
        generation: GenerationSettings,
        judge_spec: str,
    ) -> Iterator[tuple[int, list[ItemResult]]]: ...


@dataclass(frozen=True, slots=True)
class RunOptions:
    limit: int | None = None
    seed: int = 0
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    judge: str = "rules"  # rules | model:<directory> | openai:<base url>#<model>
    engine: str = "local"  # local (the version's weights in this process) | openai:<base url>#<model>
    chunk_items: int | None = None


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    suite: str
    status: str
    items: int
    resumed_items: int
    evidence: Evidence | None
    profile_version: int | None


class RiskService:
    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        clock: Clock,
        registry: RegistryService,
        vault: VaultService,
        data: DataDirectory,
        work_dir: Path,
        engine_provider: EngineProvider,
        judge_provider: Callable[[str], Judge],
        chunk_runner: ChunkRunner | None = None,
    ) -> None:
        self.database = database
        self.audit = audit
        self.clock = clock
        self.registry = registry
        self.vault = vault
        self.data = data
        self.work_dir = work_dir
        self.engine_provider = engine_provider
        self.judge_provider = judge_provider
        self.chunk_runner = chunk_runner
        self.access = registry.access  # the one authorization path (the registry's access service)

    # --- authorization ------------------------------------------------------------------

    def suites(self, caller: Caller) -> list[Suite]:
        """The evaluation suites and what each measures (any signed-in caller)."""
        self.access.require_instance(caller, Action.VIEW)
        return list(SUITES.values())

    def assessed_version(self, caller: Caller, reference: str) -> ModelVersion:
        """The version, for an assessor cleared to see it. A version the caller may not see reads
        exactly like one that does not exist; one they see but may not assess is a 403."""
        version = self.registry.find_version(reference, caller)
        self.access.require(caller, Action.ASSESS, version_asset(version.id), what=f"version {reference}")
        return version

    def _run_version(self, caller: Caller, run_id: str, run: dict[str, Any] | None, action: Action) -> ModelVersion:
        """The version of a run the caller may see. A run of a version the caller may not see
        reads exactly like a run that does not exist: the same error, naming no model."""
        self.access.require_instance(caller, Action.VIEW)  # anonymous: sign in, whatever the run
        missing = NotFound(f"no assessment run {run_id}", hint="list runs with `aperture assess runs`")
        if run is None:
            raise missing
        version_id = run["model_version_id"]
        if not self.access.authorize(caller, Action.VIEW, version_asset(version_id)).allowed:
            raise missing
        version = self.registry.record(version_id)
        if action is not Action.VIEW:
            self.access.require(caller, action, version_asset(version_id), what=f"assessment run {run_id}")
        return version

    def _log(self, version: ModelVersion) -> tuple[str, bool]:
        """How an event about a version is logged: its resource (by name in the lower tier, by
        opaque id above) and whether it is upper-tier, so that the public view withholds what the
        classification table marks upper-tier (titles, headlines, digests) behind its commitment."""
        return self.registry.log_name(version), self.registry.upper_tier(version)

    # --- the weights, as a directory transformers can load -----------------------------

    def require_lower_tier(self, version: ModelVersion) -> None:
        """Upper-tier weights are sealed at rest and leave the vault only under a two-person grant;
        evaluating them here would need a decrypted copy outside that control."""
        if self.registry.is_sealed(version):
            raise Forbidden(
                f"{version.reference} is an upper-tier (sealed) version: it is not evaluated in this process",
                hint="evaluate it on a served copy inside the secure enclave (--engine openai:URL#MODEL) or "
                "import the results (aperture assess import)",
            )

    def model_directory(self, version: ModelVersion) -> Path:
        """The version's files as symlinks to their content-addressed blobs (no copy of the weights)."""
        self.require_lower_tier(version)
        files = ((file.path, file.sha256) for file in version.files)
        return self.vault.linked_directory(self.work_dir / "models", version.manifest_digest, files, version.reference)

    # --- suite runs ---------------------------------------------------------------------

    def run_suite(
        self,
        caller: Caller,
        reference: str,
        suite_name: str,
        options: RunOptions = RunOptions(),
        *,
        progress: ProgressSink | None = None,
    ) -> RunOutcome:
        suite = find_suite(suite_name)
        validate_judge_spec(options.judge)
        validate_engine_spec(options.engine)
        version = self.assessed_version(caller, reference)
        if options.engine == "local":
            self.require_lower_tier(version)
        items, hashes = self.data.load_suite(suite)
        chosen = expand_items(suite, sample_items(items, options.limit, options.seed))
        ordered = order_for_batching(chosen)
        chunk_items = (
            options.chunk_items or CHUNK_ITEMS["knowledge" if suite.kind is SuiteKind.KNOWLEDGE else "generative"]
        )
        inputs = {
            "suite": suite.name,
            "suite_kind": suite.kind.value,
            "data_dir": "bundled" if self.data.bundled else str(self.data.root),
            "data_files": hashes,
            "prompt_format": suite.header or "chat template of the model, user turn only",
            "model": version.reference,
            "model_digest": version.manifest_digest,
            "limit": options.limit,
            "seed": options.seed,
            "item_keys": [item.key for item in ordered],
            "chunk_items": chunk_items,
            "generation": options.generation.to_dict(),
            "judge": options.judge,
            "engine_spec": options.engine,
        }
        if suite.kind is SuiteKind.JAILBREAK:
            inputs["template_set"] = JAILBREAK_SET_VERSION
        run_id = new_id()
        resource, upper = self._log(version)
        details = {"run": run_id, "suite": suite.name, "items": len(ordered), "model_digest": version.manifest_digest}
        with self.database.transaction() as connection:
            store.insert_run(
                connection, run_id, version.id, suite.name, self.clock.now(), caller.actor, inputs, len(ordered)
            )
            self.audit.append(
                connection,
                actor=caller.actor,
                action="risk.run.started",
                resource=resource,
                details=details,
                upper_tier=upper,
            )
        return self._execute(caller, run_id, version, suite, ordered, inputs, progress)

    def resume(self, caller: Caller, run_id: str, *, progress: ProgressSink | None = None) -> RunOutcome:
        """Continue an interrupted run from its last completed chunk, on the same items and data."""
        with self.database.read() as connection:
            run = store.load_run(connection, run_id)
        version = self._run_version(caller, run_id, run, Action.ASSESS)
        assert run is not None
        if run["status"] == "completed":
            raise Conflict(f"run {run_id} is already complete", hint="start a new run to measure again")
        inputs = run["inputs"]
        suite = find_suite(inputs["suite"])
        if version.manifest_digest != inputs["model_digest"]:
            raise IntegrityFailure(
                f"{inputs['model']} no longer has the digest the run started on", hint="start a new run"
            )
        if inputs["data_dir"] != ("bundled" if self.data.bundled else str(self.data.root)):
            raise InvalidInput(
                f"run {run_id} used the data directory {inputs['data_dir']}",
                hint="resume with the same APERTURE_DATA_DIR the run started with",
            )
        items, hashes = self.data.load_suite(suite)
        if hashes != inputs["data_files"]:
            raise IntegrityFailure(
                f"the data files of {suite.name} changed since run {run_id} started",
                hint="start a new run: a resumed run must score the same bytes",
            )
        by_key = {item.key: item for item in expand_items(suite, items)}
        try:
            ordered = [by_key[key] for key in inputs["item_keys"]]
        except KeyError as error:
            raise IntegrityFailure(
                f"item {error} of run {run_id} is gone from the data", hint="start a new run"
            ) from None
        with self.database.transaction() as connection:
            store.mark_running(connection, run_id)
        return self._execute(caller, run_id, version, suite, ordered, inputs, progress)

    def _execute(
        self,
        caller: Caller,
        run_id: str,
        version: ModelVersion,
        suite: Suite,
        ordered: list[Item],
        inputs: dict[str, Any],
        progress: ProgressSink | None,
    ) -> RunOutcome:
        size = int(inputs["chunk_items"])
        chunks = [(n, ordered[start : start + size]) for n, start in enumerate(range(0, len(ordered), size))]
        with self.database.read() as connection:
            done = store.load_chunks(connection, run_id)
        pending = [(n, chunk) for n, chunk in chunks if n not in done]
        resumed = sum(len(results) for results in done.values())
        items_done = resumed
        if progress is not None:
            progress.start(f"{suite.name} on {version.reference}", len(ordered), resumed)
        generation = GenerationSettings(**{k: v for k, v in inputs["generation"].items() if k != "decoding"})
        try:
            if pending:
                model_dir = self.model_directory(version) if inputs.get("engine_spec", "local") == "local" else Path()
                engine_spec = inputs.get("engine_spec", "local")
                if engine_spec != "local":
                    results_iter = self._remote_runner(engine_spec, suite, pending, generation, inputs["judge"])
                else:
                    runner = self.chunk_runner or self._local_runner
                    results_iter = runner(model_dir, version, suite, pending, generation, inputs["judge"])
                for number, results in results_iter:
                    items_done += len(results)
                    with self.database.transaction() as connection:
                        store.save_chunk(connection, run_id, number, results, items_done)
                    done[number] = results
                    if progress is not None:
                        progress.advance(len(results))
        except BaseException as error:  # Ctrl-C included: record it, keep the chunks, re-raise
            with self.database.transaction() as connection:
                store.finish_run(
                    connection,
                    run_id,
                    "failed",
                    self.clock.now(),
                    error=f"{type(error).__name__}: {error}",
                    evidence_id=None,
                )
            raise
        results = [result for n in sorted(done) for result in done[n]]
        return self._complete(caller, run_id, version, suite, results, inputs, resumed)

    def _local_runner(
        self,
        model_dir: Path,
        version: ModelVersion,
        suite: Suite,
        chunks: Sequence[tuple[int, list[Item]]],
        generation: GenerationSettings,
        judge_spec: str,
    ) -> Iterator[tuple[int, list[ItemResult]]]:
        engine = self.engine_provider(model_dir, version.manifest_digest)
        return self._score_chunks(engine, suite, chunks, generation, judge_spec)

    def _remote_runner(
        self,
        engine_spec: str,
        suite: Suite,
        chunks: Sequence[tuple[int, list[Item]]],
        generation: GenerationSettings,
        judge_spec: str,
    ) -> Iterator[tuple[int, list[ItemResult]]]:
        """A served copy of the weights (vLLM or another OpenAI-compatible server): the digest it
        serves is the operator's assertion, recorded as such in the evidence."""
        return self._score_chunks(openai_engine(engine_spec), suite, chunks, generation, judge_spec)

    def _score_chunks(
        self,
        engine: Engine,
        suite: Suite,
        chunks: Sequence[tuple[int, list[Item]]],
        generation: GenerationSettings,
        judge_spec: str,
    ) -> Iterator[tuple[int, list[ItemResult]]]:
        judge = self.judge_provider(judge_spec)
        try:
            for number, chunk in chunks:
                yield number, score_chunk(engine, suite, chunk, generation, judge)
        finally:
            engine.close()

    def _complete(
        self,
        caller: Caller,
        run_id: str,
        version: ModelVersion,
        suite: Suite,
        results: list[ItemResult],
        inputs: dict[str, Any],
        resumed: int,
    ) -> RunOutcome:
        summary = summarise(suite, results)
        headline = Estimate.from_dict(summary["headline"])
        now = self.clock.now()
        provenance = {k: v for k, v in inputs.items() if k != "item_keys"}
        provenance["run"] = run_id
        if inputs.get("engine_spec", "local") != "local":
            provenance["model_digest_asserted_by_operator"] = True
        provenance["items_digest"] = hashlib.sha256("\n".join(inputs["item_keys"]).encode()).hexdigest()
        evidence = Evidence(
            id=new_id(),
            kind=EvidenceKind.RUN,
            model_version_id=version.id,
            created_at=now,
            title=f"{suite.title} ({headline.n} items)",
            suite=suite.name,
            domain=suite.domain,
            safeguard=suite.safeguard,
            headline=headline,
            summary={**summary, "caveat": suite.caveat},
            provenance=provenance,
            author=caller.actor,
        )
        with self.database.transaction() as connection:
            store.finish_run(connection, run_id, "completed", now, error=None, evidence_id=evidence.id)
            details = {
                "run": run_id,
                "suite": suite.name,
                "evidence": evidence.id,
                "headline": describe_estimate(headline),
            }
            profile_version = self._add_evidence(connection, caller, version, [evidence], "risk.run.completed", details)
        return RunOutcome(run_id, suite.name, "completed", len(results), resumed, evidence, profile_version)

    def _add_evidence(
        self,
        connection: Connection,
        caller: Caller,
        version: ModelVersion,
        items: Sequence[Evidence],
        action: str,
        details: dict[str, Any],
    ) -> int:
        """Store evidence, build the profile version it starts and log both, in the caller's transaction."""
        for item in items:
            store.insert_evidence(connection, item)
        profile_version = self._new_profile(connection, version)
        resource, upper = self._log(version)
        self.audit.append(
            connection,
            actor=caller.actor,
            action=action,
            resource=resource,
            details={**details, "profile_version": profile_version},
            upper_tier=upper,
        )
        return profile_version

    def _new_profile(self, connection: Connection, version: ModelVersion) -> int:
        evidence = store.list_evidence(connection, version.id)
        number = store.next_profile_version(connection, version.id)
        profile = build_profile(version.id, version.reference, number, self.clock.now(), evidence)
        store.insert_profile(connection, version.id, number, profile.created_at, profile.to_dict())
        return number

    # --- evidence from elsewhere ----------------------------------------------------------

    def record_evidence(self, caller: Caller, version: ModelVersion, evidence: Evidence, action: str) -> int:
        """Store one evidence item (a tamper grid, say) and the profile version it starts."""
        with self.database.transaction() as connection:
            details = {"evidence": evidence.id, "title": evidence.title}
            return self._add_evidence(connection, caller, version, [evidence], action, details)

    def import_log(
        self, caller: Caller, reference: str, data: bytes, filename: str, *, override_reason: str | None = None
    ) -> tuple[list[Evidence], int]:
        """Import an Inspect log (`.eval` zip or `.json`) or an lm-evaluation-harness results JSON.

        Refused unless it parses, its run finished, it reports a known task, and it names no other
        model digest than this version's (an operator may override the digest check, with a reason
        that is recorded).
        """
        version = self.assessed_version(caller, reference)
        if len(data) > MAX_LOG_JSON_BYTES:
            raise TooLarge(f"{filename} is larger than {MAX_LOG_JSON_BYTES} bytes", hint="import the summary log only")
        parsed = parse_log_bytes(data, filename)
        if parsed.status not in ("success", ""):
            raise InvalidInput(
                f"{filename} records an evaluation that did not finish (status {parsed.status!r})",
                hint="import the log of a completed run",
            )
        if parsed.model_digest is not None and parsed.model_digest != version.manifest_digest and not override_reason:
            raise Conflict(
                f"{filename} was produced on model digest {parsed.model_digest}, not {reference} "
                f"({version.manifest_digest})",
                hint="import it against the right version, or pass --override-reason to record why it applies",
            )
        digest = hashlib.sha256(data).hexdigest()
        items: list[Evidence] = []
        now = self.clock.now()
        for metric in parsed.metrics:
            mapping = map_task(metric.task)
            if mapping is None or metric.metric not in (mapping.metric, "accuracy", "acc", "mean", "score"):
                continue
            headline = None
            if metric.n and 0.0 <= metric.value <= 1.0:
                headline = estimate(mapping.metric, round(metric.value * metric.n), metric.n, chance=mapping.chance)
            items.append(
                Evidence(
                    id=new_id(),
                    kind=EvidenceKind.IMPORT,
                    model_version_id=version.id,
                    created_at=now,
                    title=f"{metric.task} imported from {filename}",
                    suite=mapping.suite_like,
                    domain=mapping.domain,
                    safeguard=mapping.safeguard,
                    headline=headline,
                    summary={"value": metric.value, "stderr": metric.stderr, "n": metric.n, "metric": metric.metric},
                    provenance={
                        "file": Path(filename).name,
                        "sha256": digest,
                        "format": parsed.format,
                        "log_model": parsed.model,
                        "log_model_digest": parsed.model_digest,
                        "model_bound": parsed.model_digest == version.manifest_digest,
                        "override_reason": override_reason,
                        "log_created": parsed.created,
                    },
                    author=caller.actor,
                )
            )
        if not items:
            tasks = sorted({m.task for m in parsed.metrics}) or ["none"]
            raise InvalidInput(
                f"{filename} reports no task Aperture can map to a risk domain (tasks: {', '.join(tasks)})",
                hint="known tasks include wmdp_bio, wmdp_chem, wmdp_cyber, strong_reject, xstest, harmbench",
            )
        details = {
            "file_sha256": digest,
            "format": parsed.format,
            "evidence": [i.id for i in items],
            "override_reason": override_reason,
        }
        with self.database.transaction() as connection:
            profile_version = self._add_evidence(connection, caller, version, items, "risk.evidence.imported", details)
        return items, profile_version

    def add_finding(
        self,
        caller: Caller,
        reference: str,
        *,
        title: str,
        summary: str,
        author: str,
        domain: RiskDomain | None = None,
        safeguard: Safeguard | None = None,
        attachment: Path | None = None,
        level: str | None = None,
    ) -> tuple[Evidence, int]:
        """A manual expert finding (a red-team report): no number, an author, an optional attachment.

        The attachment is stored content-addressed in the artifact store and referenced by the
        finding, in the same transaction as the finding itself.
        """
        if not title.strip() or not author.strip():
            raise InvalidInput("a finding needs a title and an author", hint="pass --title and --author")
        if domain is None and safeguard is None:
            raise InvalidInput("a finding needs a risk domain or a safeguard", hint="pass --domain or --safeguard")
        if level is not None and level not in FINDING_LEVELS:
            raise InvalidInput(f"unknown finding level {level!r}", hint=f"use one of: {', '.join(FINDING_LEVELS)}")
        version = self.assessed_version(caller, reference)
        evidence_id = new_id()
        provenance: dict[str, Any] = {}
        with self.vault.staging() as staged:
            blobs = []
            if attachment is not None:
                if not attachment.is_file():
                    raise NotFound(f"attachment {attachment} does not exist", hint="check the path")
                if attachment.stat().st_size > MAX_ATTACHMENT_BYTES:
                    raise TooLarge(
                        f"attachment {attachment.name} is larger than {MAX_ATTACHMENT_BYTES} bytes",
                        hint="attach a summary and keep the full report in your document system",
                    )
                blobs = self.vault.store(staged, [self.vault.source_file(attachment, attachment.name)])
                provenance = {"attachment": attachment.name, "sha256": blobs[0].digest, "bytes": blobs[0].size}
            evidence = Evidence(
                id=evidence_id,
                kind=EvidenceKind.FINDING,
                model_version_id=version.id,
                created_at=self.clock.now(),
                title=title.strip(),
                suite=None,
                domain=domain,
                safeguard=safeguard,
                headline=None,
                summary={"text": summary} | ({"level": level} if level else {}),
                provenance=provenance,
                author=author.strip(),
            )
            with self.vault.committing(blobs), self.database.transaction() as connection:
                if blobs:
                    self.vault.reference(connection, f"finding:{evidence_id}", blobs, evidence.created_at)
                details = {"evidence": evidence.id, "title": evidence.title, "attachment": provenance or None}
                profile_version = self._add_evidence(
                    connection, caller, version, [evidence], "risk.finding.attached", details
                )
        return evidence, profile_version

    # --- reading --------------------------------------------------------------------------

    def profile(self, reference: str, profile_version: int | None = None, *, caller: Caller) -> dict[str, Any]:
        """A version's profile, for a caller cleared to see the version (others get not-found)."""
        version = self.registry.find_version(reference, caller)
        with self.database.read() as connection:
            payload = store.load_profile(connection, version.id, profile_version)
            versions = store.profile_versions(connection, version.id)
        if payload is None:
            if profile_version is not None:
                raise NotFound(f"{reference} has no risk profile version {profile_version}", hint="see `assess show`")
            profile = build_profile(version.id, version.reference, 0, self.clock.now(), [])
            payload = profile.to_dict()
        payload["versions"] = [{"version": v, "created_at": c.isoformat()} for v, c in versions]
        return payload

    def runs(self, caller: Caller, reference: str | None = None) -> list[dict[str, Any]]:
        """Runs of a version, or of every version the caller may see, newest first."""
        version_id = self.registry.find_version(reference, caller).id if reference else None
        if version_id is None:
            self.access.require_instance(caller, Action.VIEW)
        with self.database.read() as connection:
            runs = store.list_runs(connection, version_id)
        if version_id is None:
            seen: dict[str, bool] = {}
            for run in runs:
                key = run["model_version_id"]
                if key not in seen:
                    seen[key] = self.access.authorize(caller, Action.VIEW, version_asset(key), purpose="list").allowed
            runs = [run for run in runs if seen[run["model_version_id"]]]
        for run in runs:
            run["inputs"].pop("item_keys", None)
        return runs

    def run_details(self, caller: Caller, run_id: str) -> dict[str, Any]:
        """A run with every item's result (including generated answers: assessors only). A run of
        a version the caller may not see reads exactly like one that does not exist."""
        with self.database.read() as connection:
            run = store.load_run(connection, run_id)
            chunks = store.load_chunks(connection, run_id) if run is not None else {}
        self._run_version(caller, run_id, run, Action.ASSESS)
        assert run is not None
        run["results"] = [r.to_dict() for n in sorted(chunks) for r in chunks[n]]
        return run


# The capability levels a release policy reads from an expert finding (an uplift study, a red team).
FINDING_LEVELS = ("low", "notable", "elevated", "critical")


def describe_estimate(value: Estimate) -> str:
    """An estimate as audit-log text (the log's canonical JSON holds no floats)."""
    return f"{value.metric} {value.value:.4f} (95% CI {value.low:.4f}-{value.high:.4f}, n={value.n})"


def parse_log_bytes(data: bytes, filename: str) -> ParsedLog:
    """Detect and parse an evaluation log without executing or unpickling anything."""
    if data[:4] == b"PK\x03\x04":
        return _parse_inspect_zip(data, filename)
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(
            f"{filename} is neither an Inspect `.eval` archive nor JSON ({error})",
            hint="pass an Inspect log (.eval or .json) or an lm-evaluation-harness results JSON",
        ) from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{filename} is JSON but not an object", hint="pass an evaluation log")
    if "eval" in document:
        return parse_inspect_log(document, "inspect-json")
    if "results" in document:
        return parse_lm_eval_results(document)
    raise InvalidInput(f"{filename} is not a known evaluation log format", hint="Inspect or lm-evaluation-harness")


MAX_ZIP_MEMBER_BYTES = 16 * 1024 * 1024


ZIP_STORED, ZIP_DEFLATED, ZIP_ZSTANDARD = 0, 8, 93


def _read_member(data: bytes, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """One member's bytes, bounded. Inspect writes Zstandard members (method 93), which Python's
    zipfile cannot open, so those are located through the local header and decompressed here."""
    if info.file_size > MAX_ZIP_MEMBER_BYTES:
        raise TooLarge(f"{info.filename} is larger than {MAX_ZIP_MEMBER_BYTES} bytes", hint="not an Inspect log")
    if info.compress_type in (ZIP_STORED, ZIP_DEFLATED):
        with archive.open(info) as handle:
            return handle.read(MAX_ZIP_MEMBER_BYTES + 1)[:MAX_ZIP_MEMBER_BYTES]
    if info.compress_type != ZIP_ZSTANDARD:
        raise InvalidInput(f"{info.filename} uses zip method {info.compress_type}", hint="not an Inspect log")
    import struct

    import zstandard

    offset = info.header_offset
    if data[offset : offset + 4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"no local header for {info.filename}")
    name_length, extra_length = struct.unpack("<HH", data[offset + 26 : offset + 30])
    start = offset + 30 + name_length + extra_length
    raw = data[start : start + info.compress_size]
    if len(raw) != info.compress_size:
        raise zipfile.BadZipFile(f"{info.filename} is cut short")
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(raw)
        content = reader.read(MAX_ZIP_MEMBER_BYTES + 1)
    except zstandard.ZstdError as error:
        raise zipfile.BadZipFile(f"{info.filename}: {error}") from None
    if len(content) > MAX_ZIP_MEMBER_BYTES:
        raise TooLarge(f"{info.filename} expands past {MAX_ZIP_MEMBER_BYTES} bytes", hint="not an Inspect log")
    return bytes(content)


def _parse_inspect_zip(data: bytes, filename: str) -> ParsedLog:
    """An Inspect `.eval` file: a zip with `header.json` (eval spec, results) and per-sample files."""
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        if "header.json" not in names:
            if "_journal/start.json" in names:
                raise InvalidInput(
                    f"{filename} holds no results: the evaluation did not finish",
                    hint="import the log of a completed run",
                )
            raise InvalidInput(f"{filename} is a zip without Inspect's header.json", hint="is this an Inspect log?")
        header = json.loads(_read_member(data, archive, archive.getinfo("header.json")))
    except (zipfile.BadZipFile, EOFError, json.JSONDecodeError, UnicodeDecodeError, KeyError, ValueError) as error:
        if isinstance(error, InvalidInput):
            raise
        raise InvalidInput(
            f"{filename} is a damaged or truncated Inspect log ({type(error).__name__}: {error})",
            hint="copy the log again; a truncated .eval file cannot be read",
        ) from None
    if not isinstance(header, dict):
        raise InvalidInput(f"{filename}: header.json is not an object", hint="is this an Inspect log?")
    return parse_inspect_log(header, "inspect-eval")
