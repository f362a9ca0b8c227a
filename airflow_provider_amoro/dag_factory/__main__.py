"""Command line of the DAG factory: ``python -m airflow_provider_amoro.dag_factory <command>``.

Commands:

- ``validate``: load the configuration and print what it manages (exit 1 with the error otherwise).
- ``pools``: print the Airflow pools of the optimizer groups as ``airflow pools import`` JSON;
  ``--apply`` creates or updates them with ``airflow pools set`` (needs the metadata DB, so it runs
  at deployment time, e.g. in the docker-compose init job, never while DAGs are parsed).
- ``sync``: run the catalog sync for every catalog now (what ``amoro__catalog_sync`` does).

The configuration is ``--config``, else ``$AMORO_DAGS_CONFIG``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence

from airflow_provider_amoro.dag_factory.config import FactoryConfig, load_config
from airflow_provider_amoro.dag_factory.errors import ConfigError


def pool_specs(config: FactoryConfig) -> dict[str, dict[str, object]]:
    """The pools of the optimizer groups, in ``airflow pools import`` format."""
    return {
        g.pool: {"slots": g.slots, "description": g.description, "include_deferred": False}
        for g in config.optimizer_groups.values()
    }


def pool_commands(config: FactoryConfig) -> list[list[str]]:
    """``airflow pools set <name> <slots> <description>`` argument lists, one per group."""
    return [
        ["airflow", "pools", "set", name, str(spec["slots"]), str(spec["description"])]
        for name, spec in pool_specs(config).items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_amoro.dag_factory")
    parser.add_argument("--config", help="configuration file (default: $AMORO_DAGS_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("validate", help="check the configuration")
    pools = sub.add_parser("pools", help="print (or --apply) the optimizer groups' Airflow pools")
    pools.add_argument("--apply", action="store_true", help="run `airflow pools set` for each pool")
    sub.add_parser("sync", help="discover tables and refresh the cache now")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "validate":
        for conn_id, catalog in config.catalogs.items():
            print(f"catalog {conn_id}: include {list(catalog.include)} exclude {list(catalog.exclude)}")
        for group in config.optimizer_groups.values():
            print(f"group {group.name}: pool {group.pool} ({group.slots} slots) queue {group.queue or '-'}")
        print(f"cache: {config.cache_dir}")
        return 0
    if args.command == "pools":
        if not args.apply:
            print(json.dumps(pool_specs(config), indent=2))
            return 0
        for cmd in pool_commands(config):
            print("+", " ".join(cmd[:5]), flush=True)
            done = subprocess.run(cmd, check=False)
            if done.returncode != 0:
                return done.returncode
        return 0
    from airflow_provider_amoro.dag_factory.sync import sync_catalog

    for conn_id in config.catalogs:
        print(json.dumps(sync_catalog(config, conn_id)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
