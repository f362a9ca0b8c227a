"""Entry point of a measured subprocess: ``python -m benchmarks.child module:function '<json params>'``."""

from __future__ import annotations

import importlib
import json
import sys

from benchmarks.common import Meter, emit


def main() -> None:
    target, params = sys.argv[1], json.loads(sys.argv[2])
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    meter = Meter()
    out = func(meter, **params)
    emit({**meter.as_dict(), **(out or {})})


if __name__ == "__main__":
    main()
