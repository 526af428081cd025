"""``load_config``: find, read and validate a truss's config.yaml, once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trestle.config.document import parse_yaml
from trestle.config.problems import KeyPath, dotted, shown
from trestle.config.schema import TrussConfig
from trestle.config.section import ConfigSection
from trestle.errors import ConfigError

CONFIG_FILENAME = "config.yaml"


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config, the file it came from, and the keys the schema did not know."""

    config: TrussConfig
    path: Path
    """Absolute path of the config file."""
    unknown_keys: tuple[str, ...]
    """Dotted paths of keys the schema does not know, sorted (``bar``, ``runtime.foo``)."""

    @property
    def truss_dir(self) -> Path:
        """The directory the config belongs to: relative paths in it resolve from here."""
        return self.path.parent


def load_config(path: str | Path, *, strict: bool = False) -> LoadedConfig:
    """Load ``<dir>/config.yaml`` (when ``path`` is a directory) or the file at ``path``.

    Unknown keys are reported in ``unknown_keys`` (dotted, e.g. ``runtime.foo``); with
    ``strict=True`` they are an error, as ``truss push`` makes them. Every other problem
    raises :class:`~trestle.errors.ConfigError` naming the file, the key and what was expected.
    """
    file = _config_file(Path(path))
    shown_path = str(file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror or exc}", path=shown_path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the config file is not UTF-8 text (byte {exc.start})", path=shown_path) from None

    document = parse_yaml(text, path=shown_path)
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of config keys at the top level, got {shown(data)}", path=shown_path)
    config = TrussConfig.model_validate(data, source=shown_path, lines=document.lines)

    unknown = tuple(sorted(dotted(key) for key in unknown_key_paths(config)))
    if strict and unknown:
        raise ConfigError(
            f"Extra fields not allowed: [{', '.join(unknown)}]. Possibly this field is only supported by "
            "newer truss or trestle versions, check for updates.",
            path=shown_path,
        )
    return LoadedConfig(config=config, path=file.absolute(), unknown_keys=unknown)


def unknown_key_paths(section: ConfigSection, prefix: KeyPath = ()) -> Iterator[KeyPath]:
    """Key paths that were in the input but are not part of the schema, at any depth."""
    for key in section.model_extra:
        yield (*prefix, key)
    for name in type(section).section_fields():
        yield from _unknown_below(getattr(section, name), (*prefix, name))


def _unknown_below(value: object, prefix: KeyPath) -> Iterator[KeyPath]:
    if isinstance(value, ConfigSection):
        yield from unknown_key_paths(value, prefix)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if isinstance(item, ConfigSection):
                yield from unknown_key_paths(item, (*prefix, index))


def _config_file(path: Path) -> Path:
    """The config file ``path`` points at, with a hint for the common ``.yml`` slip."""
    if path.is_dir():
        candidate = path / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
        if (path / "config.yml").is_file():
            raise ConfigError(
                "no config.yaml here, but found config.yml: Truss and Trestle read config.yaml. "
                "Did you mean to rename it?",
                path=str(candidate),
            )
        raise ConfigError("expected a truss config file here, but there is none", path=str(candidate))
    if path.suffix == ".yml":
        raise ConfigError(
            f"config files end in .yaml (the default name is {CONFIG_FILENAME}), not .yml. Did you mean to rename it?",
            path=str(path),
        )
    if not path.exists():
        sibling = path.with_suffix(".yml")
        if path.suffix == ".yaml" and sibling.is_file():
            raise ConfigError(
                f"does not exist, but {sibling.name} does: config files end in .yaml. Did you mean to rename it?",
                path=str(path),
            )
        raise ConfigError("expected a truss config file here, but it does not exist", path=str(path))
    return path
