"""What the Dagster definitions contain, as JSON, for the browser test and the screenshots.

Runs in its own process (``python -m ml_platform_tests.ui.inventory``) with the same
environment as the ``dagster dev`` it describes, so partitions and paths match what the UI
shows and the test process never imports Dagster with other settings. With ``--prepare`` it
first runs ``ml-platform prepare`` (DAGSTER_HOME + dbt manifest) in the same interpreter,
sharing the slow imports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any


def describe(defs: Any) -> dict[str, Any]:
    """Assets (group, description, partitioning, checks, parents), sensors and schedules."""
    graph = defs.resolve_asset_graph()
    assets = []
    for node in sorted(graph.asset_nodes, key=lambda n: n.key.to_user_string()):
        partitions = node.partitions_def
        assets.append(
            {
                "key": list(node.key.path),
                "group": node.group_name,
                "description": (node.description or "").strip(),
                "materializable": bool(node.is_materializable),
                "partitions": str(partitions) if partitions is not None else None,
                "partition_keys": (
                    list(partitions.get_partition_keys()) if partitions is not None else []
                ),
                "parents": sorted(k.to_user_string() for k in node.parent_keys),
                "checks": sorted(k.name for k in node.check_keys),
            }
        )
    repo = defs.get_repository_def()
    automations = [
        {"kind": kind, "name": d.name, "default_status": d.default_status.value}
        for kind, found in (("sensors", repo.sensor_defs), ("schedules", repo.schedule_defs))
        for d in sorted(found, key=lambda d: d.name)
    ]
    return {"assets": assets, "automations": automations}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--module", default="ml_platform.definitions")
    parser.add_argument("--prepare", action="store_true", help="run ml-platform prepare first")
    args = parser.parse_args(argv)
    if args.prepare:
        from ml_platform.demo import prepare

        prepare()
    defs = importlib.import_module(args.module).defs
    if callable(defs):  # a lazy entry point (@dg.definitions): build the definitions now
        defs = defs()
    # One JSON line at the end of stdout; libraries may print before it.
    print(json.dumps(describe(defs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
