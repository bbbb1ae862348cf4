"""One registry for every name a user can choose: factors, models, metrics and backends.

Each name is declared once, here or by a plugin, through `Registry.register`; the built-ins (the paper's
four factors, its LSTM student, ...) are registered by harness.builtins through the very same calls a
plugin makes, so no built-in is special. Everything that needs a name's meaning asks its registry.

This module imports nothing heavy (no torch): the driver reads registries to plan a study, and a model's
builder imports its module only when a job builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from harness.errors import ConfigError, HarnessError

T = TypeVar("T")


class PluginError(HarnessError):
    """A plugin that cannot be loaded or that declares a name twice: names the plugin and what to do."""


class Registry(Generic[T]):
    """Names of one kind (e.g. "model") and what each means; each name registered once."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str, item: T, origin: str = "harness") -> T:
        """Declare `name`; `origin` says who did (the harness, or a plugin's module) for error messages.

        Raises:
            PluginError: the name is already declared by someone else.
        """
        if name in self._items and self._origins[name] != origin:
            raise PluginError(f"{origin}: the {self.kind} {name!r} is already declared by {self._origins[name]}; "
                              f"give yours another name")
        self._items[name] = item
        self._origins[name] = origin
        return item

    def get(self, name: str, where: str = "") -> T:
        """The item named `name`.

        Raises:
            ConfigError: an unknown name; the message lists the known ones.
        """
        if name not in self._items:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self._items)}")
        return self._items[name]

    def origin(self, name: str) -> str:
        return self._origins[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)


# --------------------------------------------------------------------------- factors


@dataclass(frozen=True)
class FactorSpec:
    """How a factor of a study (any dotted key of the method config) is named and shown.

    Attributes:
        key: the dotted method-config key it sets, e.g. "loss.pseudolabels" or "student.hidden".
        name: its short name: the [grid] / [[variant]] key, the tidy table's column and the report's key.
            The paper's four keep theirs ("pseudolabels"); any other factor is named by its key.
        label: the report's column header, e.g. "Pseudolabels", "Hidden units".
        abbreviations: level (as text) -> its part of a generated variant name ("" leaves the level out).
        level_labels: level (as text, lower case) -> how a table shows it; others are shown as they are.
    """

    key: str
    name: str
    label: str
    abbreviations: Mapping[str, str] = field(default_factory=dict)
    level_labels: Mapping[str, str] = field(default_factory=dict)

    def abbreviation(self, level: Any) -> str:
        """The level's part of a variant name: its abbreviation, else `key=level`."""
        found = _lookup(self.abbreviations, level)
        return found if found is not None else f"{self.name}={level_text(level)}"

    def display(self, level: Any) -> str:
        """The level as a table shows it."""
        found = _lookup({k.lower(): v for k, v in self.level_labels.items()}, level, lower=True)
        return found if found is not None else level_text(level)


def _lookup(table: Mapping[str, str], level: Any, lower: bool = False) -> str | None:
    """A level's entry in a table keyed by text: TOML keys are strings, so 64 is found under "64" and a float
    level 1.0 under "1.0" or "1"."""
    texts = [level_text(level)]
    if isinstance(level, float) and level.is_integer():
        texts.append(str(int(level)))
    for text in texts:
        text = text.lower() if lower else text
        if text in table:
            return table[text]
    return None


def level_text(level: Any) -> str:
    """A level as text: TOML's true/false for booleans, numbers as written (1.0 -> "1.0"), lists as [a, b]."""
    if isinstance(level, bool):
        return "true" if level else "false"
    if isinstance(level, (list, tuple)):
        return "[" + ", ".join(level_text(v) for v in level) + "]"
    return str(level)


factors: Registry[FactorSpec] = Registry("factor")


def factor_spec(name: str) -> FactorSpec:
    """The registered description of a factor, found by its short name or its dotted key; for any other
    dotted key a plain description named by the key (the key is checked against the config elsewhere)."""
    if name in factors:
        return factors.get(name)
    for spec in (factors.get(n) for n in factors):
        if spec.key == name:
            return spec
    return FactorSpec(key=name, name=name, label=name)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A student model that `student.model = NAME` chooses; its own keys are the other `student.*` keys.

    Attributes:
        name: what `student.model` says, e.g. "lstm" or "crnn".
        config: its config dataclass, a subclass of harness.config.ModelConfig whose `model` field defaults
            to `name`; it holds every `student.*` key of this model (gate_threshold included).
        build: (config, n_mels, n_classes) -> a torch.nn.Module mapping features [B, T, F] to (frame
            probabilities [B, C, T], clip probabilities [B, C]), T as in its input whatever the model does
            inside (a time-pooling model upsamples its frame outputs back to the study's hop). Under bf16
            autocast it must still return float32 probabilities. Imports torch lazily.
        size: (config, n_mels, n_classes, n_frames) -> harness.model.size.ModelSize: its trainable
            parameters (exactly sum(p.numel()) of what `build` gives) and MACs per clip of n_frames frames.
        check: (config, where) -> None: refuses, with a ConfigError naming the key, a combination of values
            no build can take that the per-key ranges (harness.ranges) cannot see; None: nothing to check.
        description: one line for listings.
    """

    name: str
    config: type
    build: Callable[[Any, int, int], Any]
    size: Callable[[Any, int, int, int], Any]
    check: Callable[[Any, str], None] | None = None
    description: str = ""


models: Registry[ModelSpec] = Registry("model")


def _load_builtins() -> None:
    from harness import builtins  # noqa: F401  (registers the built-ins through the calls above)


_load_builtins()
