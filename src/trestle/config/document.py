"""Reading config.yaml: YAML with unique keys, plus the line each key was written on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trestle.config.problems import KeyPath, dotted
from trestle.errors import ConfigError

_MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_YAML_VALUES = 100_000
"""The most values a document may expand to. Aliases make a few hundred bytes expand to billions of
values (an "alias bomb"), which every later walk of the data would pay for; no real config comes close.
The expanded size is computed once per distinct node, so checking it costs what parsing costs."""


class _Loader(yaml.SafeLoader):
    """A private SafeLoader subclass, so nothing global is changed."""


@dataclass(frozen=True)
class YamlDocument:
    """The parsed data and, for every mapping key and list item, its 1-based line."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)


def parse_yaml(text: str, *, path: str) -> YamlDocument:
    """Parse one YAML document. Duplicate keys at any depth are an error."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(data=None)
        lines: dict[KeyPath, int] = {}
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise ConfigError(
                f"the document expands to more than {MAX_YAML_VALUES} values (YAML aliases used as a bomb?)",
                path=path,
            )
        _index(node, (), lines, path=path, seen_nodes=set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unreadable"
        raise ConfigError(f"invalid YAML{where}: {problem}", path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=path) from None
    finally:
        loader.dispose()
    return YamlDocument(data=data, lines=lines)


def load_yaml(text: str, *, path: str) -> Any:
    """The data of one YAML document, with ``parse_yaml``'s checks (unique keys, bounded expansion)."""
    return parse_yaml(text, path=path).data


def _expanded_size(node: Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (memoised per node; a recursive
    alias counts once)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a recursive alias back to a node being measured counts as one
    total = 1
    if isinstance(node, MappingNode):
        total += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    elif isinstance(node, SequenceNode):
        total += sum(_expanded_size(item, sizes) for item in node.value)
    sizes[id(node)] = total
    return total


def _index(node: Node, key: KeyPath, lines: dict[KeyPath, int], *, path: str, seen_nodes: set[int]) -> None:
    """Record line numbers under ``key`` and reject duplicate mapping keys. A node reached again through an
    alias is not walked again (its keys were checked the first time)."""
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            identity = (key_node.tag, key_node.value)
            child = (*key, key_node.value)
            if identity in seen:
                raise ConfigError(
                    f"duplicate key {key_node.value!r} at line {line} (first written at line {seen[identity]})",
                    path=path,
                    key=dotted(child),
                )
            seen[identity] = line
            lines.setdefault(child, line)
            _index(value_node, child, lines, path=path, seen_nodes=seen_nodes)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            child = (*key, index)
            lines.setdefault(child, item.start_mark.line + 1)
            _index(item, child, lines, path=path, seen_nodes=seen_nodes)
