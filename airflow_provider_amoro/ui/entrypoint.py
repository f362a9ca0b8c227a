"""Target of the ``airflow.plugins`` entry point: the plugin class, unless Airflow loads it otherwise.

Airflow's plugins manager registers plugins from ``airflow.plugins`` entry points always, and
from provider metadata only when ``[core] lazy_discover_providers`` is False. The provider lists
its plugin in both places so that it loads in either configuration; this module hands the entry
point the plugin class only in the configuration where provider plugins are *not* read, so it is
registered exactly once. Anything that is not a plugin class is skipped by Airflow silently.

One more way to see it twice: a development checkout has the package's metadata both in the
virtualenv (``*.dist-info``) and in the source tree (``*.egg-info``), and a Python started in the
source tree sees two distributions with the same entry point; Airflow loads each (its
``entry_points_with_dist`` leaves de-duplication to the caller). Airflow loads the whole entry point
group in one pass, so of every run of ``copies`` consecutive loads only the first gets the class.
"""

from __future__ import annotations

import threading
from typing import Any

ENTRY_POINT_VALUE = "airflow_provider_amoro.ui.entrypoint:plugin"

_lock = threading.Lock()
_loads = 0


def _copies() -> int:
    """How many distributions on ``sys.path`` declare this entry point (at least 1)."""
    try:
        from airflow._shared.module_loading import entry_points_with_dist
    except ImportError:  # pragma: no cover - Airflow 3.3 has it
        return 1
    return max(
        1, sum(1 for ep, _ in entry_points_with_dist("airflow.plugins") if ep.value == ENTRY_POINT_VALUE)
    )


def _resolve() -> Any:
    from airflow import settings

    global _loads
    with _lock:
        first_of_pass = _loads % _copies() == 0
        _loads += 1
    if settings.LAZY_LOAD_PROVIDERS and first_of_pass:
        from airflow_provider_amoro.ui.plugin import AmoroLakehousePlugin

        return AmoroLakehousePlugin
    return None


def __getattr__(name: str) -> Any:
    if name == "plugin":
        return _resolve()
    raise AttributeError(name)
