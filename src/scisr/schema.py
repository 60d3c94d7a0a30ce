"""The schemas shipped with the library, and the defaults they state (`schema_default`).

config/schema.yaml and config/train.schema.yaml are the one place defaults live; the library reads them through
links beside this module (copies in an installed wheel: package data). Only PyYAML: modules of any rule
environment (extract, the `scisr` command) may import this one.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CONFIG_DIR", "SCHEMA", "TRAIN_SCHEMA", "load_schema", "schema_default"]

# schema.yaml and train.schema.yaml beside this module: links to config/ in a checkout, copies in an installed wheel
# (package data), so the `scisr` command finds its defaults wherever the library is installed.
CONFIG_DIR = Path(__file__).resolve().parent
SCHEMA = "schema.yaml"
TRAIN_SCHEMA = "train.schema.yaml"


@functools.cache
def load_schema(path: Path) -> dict:
    """A schema file, parsed once per process (callers must not modify it)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _resolve(node: Mapping, root: Mapping) -> Mapping:
    """Follow a local `$ref` ("#/$defs/name") to the node it names."""
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are followed, got {ref!r}")
        node = root
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def schema_default(key: str, schema: str | Path | None = None) -> Any:
    """The default that config/schema.yaml gives a dotted key, e.g. ``schema_default("infer.tile")``.

    ``*`` stands for any name of a mapping of named blocks (``"datasets.*.frames.exclude"``). `schema` is a schema
    file (default: config/schema.yaml of this checkout). Raises KeyError naming the key when the schema does not
    describe it or gives it no default.
    """
    path = Path(schema) if schema is not None else CONFIG_DIR / SCHEMA
    root = load_schema(path.resolve())
    node: Mapping = root
    for part in key.split("."):
        node = _resolve(node, root)
        properties = node.get("properties", {})
        if part == "*" and isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        elif part in properties:
            node = properties[part]
        else:
            raise KeyError(f"{path.name} describes no key {key!r}")
    node = _resolve(node, root)
    if "default" not in node:
        raise KeyError(f"{path.name} gives {key!r} no default")
    return copy.deepcopy(node["default"])
