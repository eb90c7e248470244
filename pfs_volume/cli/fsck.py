"""``pfs fsck``: check this node's pool against the metadata, and repair on request."""

from __future__ import annotations

import sys

from pfs_volume.cli.commands import arg, command
from pfs_volume.cli.options import JSON, api_client
from pfs_volume.cli.output import print_json


@command("fsck")
@arg(
    "--repair",
    action="store_true",
    help="Fix what can be fixed without losing data (default: report only).",
)
@JSON
def fsck(repair: bool, as_json: bool) -> None:
    """Check every repo's commits, snapshots and working copies on this node: snapshots
    without records, records without snapshots, partial receives, pruned snapshots
    still here, stale working copies, data of deleted repos, commits with no size
    recorded (--repair measures them). Start-up does not look at these (it only
    finishes what a crash left). Exits 1 when a problem is left."""
    report = api_client().fsck(repair)
    problems = report["problems"]
    if as_json:
        print_json(report)
    else:
        print(
            f"checked {report['repos']} repo(s), {report['commits']} commit(s), "
            f"{report['snapshots']} snapshot(s): {len(problems)} problem(s)"
        )
        for problem in problems:
            if problem["repaired"]:
                done = f"{problem['action']}"
            elif problem["action"] and problem["action"] != "kept" and not repair:
                done = f"--repair: {problem['action']}"
            else:
                done = problem["action"] or "reported"
            print(f"{problem['repo']}: {problem['kind']}: {problem['what']} [{done}]")
    if any(not p["repaired"] for p in problems):
        sys.exit(1)
