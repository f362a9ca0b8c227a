"""Child process of ``OptimizingNeededTrigger``: evaluate one table, off the triggerer's event loop.

The evaluation reads manifests with pyarrow and holds the GIL for long stretches; in a thread of the
triggerer it would stall every other trigger. The trigger resolves the catalog connection itself
(the child has no access to Airflow's connections), then starts ``python -m
airflow_provider_amoro.triggers.evaluate_child`` and writes one JSON request to its stdin::

    {"catalog": "<name>", "properties": {...}, "table": "ns.t",
     "last_minor_ms": null, "last_major_ms": null, "last_full_ms": null}

The child prints the evaluation (``EvaluationResult.to_dict()``) as one JSON line on stdout. The
request travels on stdin, never on the command line, because the properties may hold secrets.
This module imports no Airflow.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def evaluate_request(request: dict[str, Any]) -> dict[str, Any]:
    """Load the table through pyiceberg and evaluate it."""
    from pyiceberg.catalog import load_catalog

    from airflow_provider_amoro.optimizing import evaluate

    catalog = load_catalog(str(request["catalog"]), **dict(request["properties"]))
    table = catalog.load_table(str(request["table"]))
    result = evaluate(
        table,
        last_minor_ms=request.get("last_minor_ms"),
        last_major_ms=request.get("last_major_ms"),
        last_full_ms=request.get("last_full_ms"),
    )
    out: dict[str, Any] = result.to_dict()
    return out


def main() -> None:
    """Read the request from stdin, print the evaluation."""
    request = json.loads(sys.stdin.read())
    print(json.dumps(evaluate_request(request), default=str))


if __name__ == "__main__":
    main()
