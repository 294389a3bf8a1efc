"""Find the feature packages under `project/`, so new ones need no registration by hand."""

import importlib
import pkgutil
from functools import cache
from importlib.util import find_spec
from types import ModuleType

import project


@cache
def feature_packages() -> tuple[str, ...]:
    """Return the packages directly under `project/` (`project.users`, `project.tasks`, ...)."""
    return tuple(
        f"{project.__name__}.{module.name}"
        for module in pkgutil.iter_modules(project.__path__)
        if module.ispkg
    )


def import_feature_modules(name: str) -> list[ModuleType]:
    """Import `<feature>.<name>` (e.g. `models`) from every feature package that has one."""
    return [
        importlib.import_module(f"{package}.{name}")
        for package in feature_packages()
        if find_spec(f"{package}.{name}") is not None
    ]
