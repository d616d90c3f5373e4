"""Marking the bundled model (SmolLM2-135M, 106 M marked coordinates) for one licensee: target under 10 s.

Three steps, each in a fresh child process so its peak RSS is its own:
- `mark`: read the original safetensors file into memory, stream the marked copy to a new file
  (fsync), then the self-test: read the copy back tensor by tensor and score the licensee's key;
- `peer`: the same copy without a mark through the safetensors library (load_file + save_file +
  fsync): what any copy of the model costs;
- `issue`: the whole use case, `LicensingService.issue_copy`, on an instance where the model is
  registered at SL3 (sealed at rest): decrypt the original, mark while sealing the copy, read the
  sealed copy back for the self-test, record it in the log (instance set-up is not timed).

    .venv/bin/python bench/bench_mark.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from licensing_support import WORK, bundled_dir

CHILD = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from licensing_support import *
mode, work = sys.argv[1], Path(sys.argv[2])
source = bundled_dir()
if mode == "peer":
    from safetensors.numpy import load_file, save_file
    started = time.perf_counter()
    tensors = load_file(str(source / "model.safetensors"))
    save_file(tensors, str(work / "peer.safetensors"))
    fd = os.open(work / "peer.safetensors", os.O_RDONLY); os.fsync(fd); os.close(fd)
    elapsed = time.perf_counter() - started
    print(json.dumps({"s": elapsed, "rss": rss_mib()})); sys.exit()
if mode == "mark":
    import numpy as np
    from aperture.licensing import marking
    from aperture.licensing.weights import iter_safetensors
    seed = marking.licensee_seed(new_master(), MODEL, VERSION, "acme")
    started = time.perf_counter()
    arrays, metadata, buffer = load_original(source)
    out = work / "marked.safetensors"
    write_marked(arrays, metadata, seed, out)
    fd = os.open(out, os.O_RDONLY); os.fsync(fd); os.close(fd)
    marked_at = time.perf_counter()
    names = set(marking.marked_names(arrays))
    def chunks():
        with out.open("rb") as handle:
            while block := handle.read(4 << 20):
                yield block
    total = energy = 0.0
    for name, copy in iter_safetensors(chunks()):
        if name in names:
            v = marking.residual_vector(name, copy.astype(np.float32), arrays[name])
            total += float(v @ marking.pattern(seed, name, arrays[name].shape).ravel()); energy += float(v @ v)
    done = time.perf_counter()
    print(json.dumps({"s": done - started, "mark_s": marked_at - started, "self_test_s": done - marked_at,
                      "z": total / energy ** 0.5, "rss": rss_mib()})); sys.exit()
# issue: the whole use case on an instance with the model sealed at SL3
from datetime import timedelta
from aperture.access.domain import (SYSTEM, Caller, Organisation, OrganisationKind, PrincipalKind, Role,
    RuleOfLaw, SecurityLevel, State, StateKind, Vetting)
from aperture.bootstrap import build_services, init_instance
from aperture.settings import Settings
from aperture.release.domain import Tier
from aperture.testing.release import put_tier
services = build_services(Settings(home=work / "home"))
init_instance(services)
access = services.access
access.save_state(SYSTEM, State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE))
access.save_organisation(SYSTEM, Organisation("institute", "Institute", OrganisationKind.PUBLIC_BODY, "FR"))
access.save_organisation(SYSTEM, Organisation("acme", "Acme", OrganisationKind.COMPANY, "FR"))
access.add_programme(SYSTEM, "frontier", "Frontier")
people = {"olive": ("institute", Role.LICENSING_OFFICER), "oscar": ("institute", Role.LICENSING_OFFICER),
          "alan": ("acme", Role.LICENSEE), "carol": ("institute", Role.KEY_CUSTODIAN),
          "dave": ("institute", Role.KEY_CUSTODIAN)}
for name, (org, role) in people.items():
    access.add_principal(SYSTEM, name, kind=PrincipalKind.PERSON, organisation=org, clearance=SecurityLevel.SL4,
                         vetting=Vetting.ENHANCED, roles=(role,), programmes=("frontier",))
def caller(name):
    return Caller(principal=name, roles=access.get_principal(name).roles)
shares = dict(services.security.init_seal(SYSTEM, ["carol", "dave"], 2))
import shutil as _sh
copy_dir = work / "source"; _sh.copytree(source, copy_dir)
version = services.registry.register(
    SYSTEM, copy_dir, MODEL, VERSION, level=SecurityLevel.SL3, programme="frontier").version
put_tier(services, MODEL, VERSION, Tier.LICENSED)
for name in ("carol", "dave"):
    services.security.present_share(caller(name), shares[name])
lic = services.licensing
app = lic.apply(caller("alan"), version.reference, intended_use="research", fields_of_use=["research"],
    territories=["FR"], claimed_level=3)
for q in lic.checklist():
    lic.screen(caller("olive"), app.id, q.id, "pass")
lic.decide(caller("olive"), app.id, "approve", "ok"); lic.second_approval(caller("oscar"), app.id)
licence = lic.change_licence(caller("olive"), lic.grant_licence(caller("olive"), app.id).id, "activate")
before = rss_mib()
started = time.perf_counter()
copy = lic.issue_copy(caller("olive"), licence.id)
elapsed = time.perf_counter() - started
services.close()
print(json.dumps({"s": elapsed, "z": copy.self_test_z, "rss": rss_mib(), "rss_before": before}))
"""


def run(mode: str) -> dict[str, float]:
    work = WORK / f"mark-{mode}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(work), str(Path(__file__).resolve().parent)],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    model = bundled_dir()
    size = (model / "model.safetensors").stat().st_size
    print(f"bundled model: {model.name}, model.safetensors {size / 2**20:.0f} MiB")
    results: dict[str, list[dict[str, float]]] = {"mark": [], "peer": [], "issue": []}
    for _ in range(args.runs):
        for mode in results:
            results[mode].append(run(mode))
    med = {mode: statistics.median(r["s"] for r in rows) for mode, rows in results.items()}
    peak = {mode: max(r["rss"] for r in rows) for mode, rows in results.items()}
    mark = results["mark"]
    print(f"runs: {args.runs}; medians; peak RSS is the largest over the runs")
    print(
        f"mark + write + self-test: {med['mark']:.2f} s "
        f"(mark and write {statistics.median(r['mark_s'] for r in mark):.2f} s,"
        f" self-test {statistics.median(r['self_test_s'] for r in mark):.2f} s, z = {mark[0]['z']:.0f}), "
        f"peak RSS {peak['mark']:.0f} MiB"
    )
    print(
        f"peer: unmarked copy via safetensors load_file + save_file: {med['peer']:.2f} s, "
        f"peak RSS {peak['peer']:.0f} MiB"
    )
    print(f"ratio ours / peer: {med['mark'] / med['peer']:.2f}")
    issue = results["issue"]
    print(
        f"issue_copy (sealed SL3 original -> sealed marked copy, self-test, log): {med['issue']:.2f} s, "
        f"self-test z = {issue[0]['z']:.0f}, peak RSS {peak['issue']:.0f} MiB "
        f"(set-up before it: {max(r['rss_before'] for r in issue):.0f} MiB)"
    )
    print(f"target: under 10 s -> {'met' if med['issue'] < 10 and med['mark'] < 10 else 'NOT met'}")
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
