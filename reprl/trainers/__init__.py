"""Self-supervised pretraining trainers (config group ``trainer``). Importing this package
imports every trainer module in it, whose decorators register them in
``reprl.registry.TRAINERS``."""

import importlib
import pkgutil

_SKIP = {"base", "setup"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SKIP:
        importlib.import_module(f"{__name__}.{_module.name}")
