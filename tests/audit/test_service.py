"""The transparency log on a real instance (SQLite, or PostgreSQL with APERTURE_TEST_DATABASE_URL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from aperture.audit import domain
from aperture.audit.domain import AuditEvent, ProblemKind
from aperture.bootstrap import Services
from aperture.core.errors import IntegrityFailure, InvalidInput, NotFound


def append(services: Services, n: int, prefix: str = "thing") -> list[AuditEvent]:
    with services.database.transaction() as connection:
        return [
            services.audit.append(
                connection, actor="tester", action="test.event", resource=f"{prefix}:{i}", details={"i": i, "s": "é"}
            )
            for i in range(n)
        ]


def all_leaf_hashes(services: Services) -> list[bytes]:
    """Every leaf hash, recomputed from what each event's public view shows."""
    events: list[dict[str, object]] = []
    before = None
    while page := services.audit.list_records(limit=500, before=before):
        events.extend(services.audit.event_json(record, domain.disclose_none) for record in page)
        before = page[-1].leaf_index
    return [domain.leaf_hash(domain.event_leaf_data(e)) for e in reversed(events)]


def sql(services: Services, statement: str, **params: object) -> None:
    with services.database.transaction() as connection:
        connection.execute(text(statement), params)


def test_an_event_commits_with_its_change_and_rolls_back_with_it(services: Services) -> None:
    start = services.audit.tree_size()
    with pytest.raises(RuntimeError), services.database.transaction() as connection:
        services.audit.append(connection, actor="a", action="test.doomed", resource="r")
        raise RuntimeError("the change failed")
    assert services.audit.tree_size() == start
    event = append(services, 1)[0]
    assert event.leaf_index == start  # no hole where the rolled-back event was
    assert services.audit.get_event(start) == event


def test_events_list_newest_first_and_page_back(services: Services) -> None:
    append(services, 7)
    size = services.audit.tree_size()
    first = services.audit.list_events(limit=3)
    assert [e.leaf_index for e in first] == [size - 1, size - 2, size - 3]
    second = services.audit.list_events(limit=3, before=first[-1].leaf_index)
    assert [e.leaf_index for e in second] == [size - 4, size - 5, size - 6]
    assert first[0].details == {"i": 6, "s": "é"}
    with pytest.raises(NotFound):
        services.audit.get_event(size)
    with pytest.raises(InvalidInput):
        services.audit.list_events(limit=0)


def test_append_refuses_what_cannot_be_hashed_or_stored(services: Services) -> None:
    with services.database.transaction() as connection:
        with pytest.raises(InvalidInput, match="refuses floats"):
            services.audit.append(connection, actor="a", action="x", resource="r", details={"p": 0.5})
        with pytest.raises(InvalidInput, match="action"):
            services.audit.append(connection, actor="a", action="x" * 101, resource="r")
        with pytest.raises(InvalidInput, match="actor"):
            services.audit.append(connection, actor="", action="x", resource="r")


def test_tree_heads_are_signed_checkpoints_issued_only_when_the_log_grew(services: Services) -> None:
    head = services.audit.issue_tree_head()
    assert head.tree_size == services.audit.tree_size()
    checkpoint = domain.verify_signed_note(head.signed_note, services.keys.public_key_pem)
    assert (checkpoint.tree_size, checkpoint.root_hash) == (head.tree_size, head.root_hash)
    assert head.root_hash == domain.root_hash(all_leaf_hashes(services))
    assert head.origin == f"aperture/{services.keys.key_id}"
    assert services.audit.issue_tree_head() == head
    assert services.audit.issue_tree_head_if_grown() is None
    append(services, 3)
    grown = services.audit.issue_tree_head_if_grown()
    assert grown is not None and grown.tree_size == head.tree_size + 3
    assert services.audit.latest_tree_head() == grown
    proof = services.audit.consistency_proof(head.tree_size)
    assert proof.second == grown.tree_size
    assert domain.check_bundle(proof.to_json(), services.keys.public_key_pem).ok


def test_proofs_match_the_in_memory_tree_with_and_without_stored_subtrees(services: Services) -> None:
    append(services, 600)
    head = services.audit.issue_tree_head()  # stores the subtree hashes of the first 512 leaves
    append(services, 300, prefix="later")  # leaves past the stored subtrees
    hashes = all_leaf_hashes(services)
    size = len(hashes)
    for index in (0, 1, 255, 256, 300, 511, 512, head.tree_size - 1):
        proof = services.audit.inclusion_proof(index)
        assert proof.tree_size == head.tree_size and proof.tree_head == head
        assert list(proof.path) == domain.inclusion_proof(hashes, index, head.tree_size)
        assert domain.check_bundle(proof.to_json(), services.keys.public_key_pem).ok
    for index in (0, 599, 700, size - 1):
        unsigned = services.audit.inclusion_proof(index, size)
        assert unsigned.tree_head is None
        assert list(unsigned.path) == domain.inclusion_proof(hashes, index, size)
        assert unsigned.root_hash == domain.root_hash(hashes)
    for first, second in ((1, size), (256, 512), (300, 700), (head.tree_size, size), (size, size)):
        consistency = services.audit.consistency_proof(first, second)
        assert list(consistency.path) == domain.consistency_proof(hashes, first, second)
        assert domain.verify_consistency(
            first, second, consistency.first_root, consistency.second_root, consistency.path
        )


def test_proofs_need_a_leaf_inside_a_tree_that_exists(services: Services) -> None:
    size = services.audit.tree_size()
    with pytest.raises(NotFound, match="no signed tree head"):
        services.audit.inclusion_proof(0)
    services.audit.issue_tree_head()
    append(services, 2)
    with pytest.raises(NotFound, match="no signed tree head covers"):
        services.audit.inclusion_proof(size)
    with pytest.raises(NotFound):
        services.audit.inclusion_proof(0, size + 5)
    with pytest.raises(NotFound):
        services.audit.consistency_proof(size + 1, size)


def test_a_clean_log_verifies(services: Services) -> None:
    append(services, 300)
    services.audit.issue_tree_head()
    append(services, 5)
    report = services.audit.verify()
    assert report.ok, report.problems
    assert report.tree_size == services.audit.tree_size()
    head = services.audit.latest_tree_head()
    assert head is not None
    stored = sum(head.tree_size >> level for level in range(domain.STRIDE, 64, domain.STRIDE))
    assert report.heads_checked == 1 and report.nodes_checked == stored


def test_verify_detects_an_edited_row(services: Services) -> None:
    append(services, 20)
    services.audit.issue_tree_head()
    edited = services.audit.get_record(7)
    details = dict(edited.details, s="edited")  # a public-looking field added by hand
    sql(
        services,
        "UPDATE audit_events SET details = :details WHERE leaf_index = 7",
        details=domain.details_text(details),
    )
    report = services.audit.verify()
    kinds = {(p.kind, p.where) for p in report.problems}
    assert (ProblemKind.LEAF, "leaf 7") in kinds
    assert any(p.kind is ProblemKind.ROOT for p in report.problems)


def test_verify_detects_a_deleted_row(services: Services) -> None:
    append(services, 20)
    head = services.audit.issue_tree_head()
    sql(services, "DELETE FROM audit_events WHERE leaf_index = 18")
    report = services.audit.verify()
    assert report.problems[0].kind is ProblemKind.GAP
    assert report.problems[0].where == "leaf 18"
    assert "1 row(s) missing" in report.problems[0].message
    assert any(p.kind is ProblemKind.TRUNCATED for p in report.problems)
    append(services, 1)
    with pytest.raises(IntegrityFailure, match="leaf 18"):
        services.audit.issue_tree_head()  # a log never signs over a hole
    with pytest.raises(IntegrityFailure, match="leaf 18"):
        services.audit.inclusion_proof(18, head.tree_size)


def test_verify_detects_swapped_rows_and_narrows_them_to_a_tile(services: Services) -> None:
    append(services, 600)
    services.audit.issue_tree_head()
    # Two rows trade places, stored leaf hashes and all: each row is still self-consistent.
    sql(services, "UPDATE audit_events SET leaf_index = -1 WHERE leaf_index = 300")
    sql(services, "UPDATE audit_events SET leaf_index = 300 WHERE leaf_index = 301")
    sql(services, "UPDATE audit_events SET leaf_index = 301 WHERE leaf_index = -1")
    report = services.audit.verify()
    assert {p.kind for p in report.problems} == {ProblemKind.ROOT, ProblemKind.NODE}
    # The stored subtree hashes narrow it down to the 16 leaves around the swap.
    nodes = [p.where for p in report.problems if p.kind is ProblemKind.NODE]
    assert nodes == ["leaves 288-303", "leaves 256-511"]
    # New heads keep committing to the original history (the stored subtree), so proofs for the
    # moved rows stop verifying instead of silently covering the change.
    append(services, 1)
    assert services.audit.issue_tree_head().tree_size == services.audit.tree_size()
    with pytest.raises(IntegrityFailure, match="no longer leads from leaf 300"):
        services.audit.inclusion_proof(300)


def test_verify_reports_rows_of_the_wrong_type_instead_of_failing(services: Services) -> None:
    sql(services, "UPDATE audit_events SET actor = 123 WHERE leaf_index = 1")
    if services.database.is_sqlite:  # PostgreSQL's column types refuse this edit
        sql(services, "UPDATE audit_events SET schema_version = 'x' WHERE leaf_index = 0")
    report = services.audit.verify()
    assert (ProblemKind.LEAF, "leaf 1") in {(p.kind, p.where) for p in report.problems}
    if services.database.is_sqlite:
        assert (ProblemKind.LEAF, "leaf 0") in {(p.kind, p.where) for p in report.problems}


def test_verify_detects_a_forged_tree_head(services: Services) -> None:
    append(services, 5)
    head = services.audit.issue_tree_head()
    sql(services, f"UPDATE audit_tree_heads SET tree_size = {head.tree_size - 1} WHERE tree_size = {head.tree_size}")
    report = services.audit.verify()
    assert {p.kind for p in report.problems} == {ProblemKind.SIGNATURE, ProblemKind.ROOT}


def test_concurrent_appends_get_distinct_contiguous_indices(services: Services) -> None:
    start = services.audit.tree_size()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            for i in range(25):
                with services.database.transaction() as connection:
                    services.audit.append(connection, actor=name, action="test.concurrent", resource=f"r:{i}")
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(f"worker-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert services.audit.tree_size() == start + 100
    indices = sorted(e.leaf_index for e in services.audit.list_events(limit=500))
    assert indices == list(range(start + 100))
    services.audit.issue_tree_head()
    assert services.audit.verify().ok


def test_standalone_records_interleave_with_transactional_appends_from_many_threads(services: Services) -> None:
    """`record` (own connection per thread on SQLite) and `append` share one leaf sequence."""
    start = services.audit.tree_size()
    errors: list[BaseException] = []

    def worker(name: str, standalone: bool) -> None:
        try:
            for i in range(25):
                if standalone:
                    services.audit.record(actor=name, action="test.recorded", resource=f"r:{i}", details={"i": i})
                else:
                    with services.database.transaction() as connection:
                        services.audit.append(connection, actor=name, action="test.appended", resource=f"r:{i}")
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(f"worker-{n}", n % 2 == 0)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = services.audit.list_events(limit=500)
    assert sorted(e.leaf_index for e in events) == list(range(start + 100))
    assert sum(e.action == "test.recorded" for e in events) == 50
    services.audit.issue_tree_head()
    assert services.audit.verify().ok


def test_a_recorded_event_is_committed_and_returned_as_stored(services: Services) -> None:
    event = services.audit.record(actor="tester", action="test.recorded", resource="thing:1", details={"n": 1})
    stored = services.audit.get_event(event.leaf_index)
    assert stored == event
    with pytest.raises(InvalidInput):
        services.audit.record(actor="", action="test.recorded", resource="thing:1")
    assert services.audit.tree_size() == event.leaf_index + 1


def test_the_newest_inclusion_proof_uses_the_signed_head_else_the_current_tree(services: Services) -> None:
    append(services, 3)
    head = services.audit.issue_tree_head()
    covered = services.audit.newest_inclusion_proof(head.tree_size - 1)
    assert covered.tree_head == head and covered.tree_size == head.tree_size
    late = append(services, 1)[0]
    uncovered = services.audit.newest_inclusion_proof(late.leaf_index)
    assert uncovered.tree_head is None and uncovered.tree_size == late.leaf_index + 1
    assert uncovered.event["event_id"] == late.event_id
    with pytest.raises(NotFound):
        services.audit.newest_inclusion_proof(late.leaf_index + 1)


def test_event_sizes_are_bounded_with_a_clear_error(services: Services) -> None:
    """No emitter can grow the log by an unbounded event: each part and the whole are capped,
    and the error names the action and the limit (nothing is written)."""
    start = services.audit.tree_size()
    with services.database.transaction() as connection:
        with pytest.raises(InvalidInput, match=r"'test.big' is too large: the details as JSON is \d+, at most 16384"):
            services.audit.append(connection, actor="a", action="test.big", resource="r", details={"x": "y" * 20_000})
        with pytest.raises(InvalidInput, match="resource must be 1 to 500 characters"):
            services.audit.append(connection, actor="a", action="test.big", resource="r" * 501)
        with pytest.raises(InvalidInput, match="the actor as JSON is 402, at most 200"):
            services.audit.append(connection, actor='"' * 200, action="instance.initialised", resource="r")
        many = {f"k{i}": "v" * 100 for i in range(140)}  # 15 KB of details: fine, withheld or not
        services.audit.append(connection, actor="a", action="test.big", resource="r", details=many)
    assert services.audit.tree_size() == start + 1


def test_verify_warns_of_unsigned_events_and_an_old_head(services: Services) -> None:
    append(services, 3)
    head = services.audit.issue_tree_head()
    append(services, 2)
    report = services.audit.verify()
    assert report.ok and report.signed_size == head.tree_size
    assert [(w.kind, w.where) for w in report.warnings] == [
        (ProblemKind.UNSIGNED, f"leaves {head.tree_size}-{head.tree_size + 1}")
    ]
    aged = services.audit.verify(max_head_age=timedelta(0))
    assert [w.kind for w in aged.warnings] == [ProblemKind.UNSIGNED, ProblemKind.STALE_HEAD]
    services.audit.issue_tree_head()
    assert services.audit.verify(max_head_age=timedelta(0)).warnings == ()


def test_verify_fails_when_every_signed_head_is_deleted(services: Services) -> None:
    append(services, 20)
    services.audit.issue_tree_head()
    sql(services, "DELETE FROM audit_tree_heads")
    report = services.audit.verify()
    assert not report.ok
    assert {p.kind for p in report.problems} == {ProblemKind.NO_HEAD}
    assert any("signed tree heads were deleted" in p.message for p in report.problems)
    sql(services, "DELETE FROM audit_tree_nodes")  # the derived hashes too: still no head
    assert [p.kind for p in services.audit.verify().problems] == [ProblemKind.NO_HEAD]
