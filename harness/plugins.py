"""One registry for every name a user can choose: factors, models, metrics and backends.

Each name is declared once, here or by a plugin, through `Registry.register`; the built-ins (the paper's
four factors, its LSTM student, ...) are registered by harness.builtins through the very same calls a
plugin makes, so no built-in is special. Everything that needs a name's meaning asks its registry.

This module imports nothing heavy (no torch): the driver reads registries to plan a study, and a model's
builder imports its module only when a job builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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

    def register(self, name: str, item: T, origin: str | None = None) -> T:
        """Declare `name`; `origin` says who did: by default the calling module (harness.builtins for the
        built-ins, a plugin's module for its names), which names it in errors and ties it to its plugin's code
        identity (origin_plugin).

        Raises:
            PluginError: the name is already declared by someone else.
        """
        if origin is None:
            import sys

            origin = str(sys._getframe(1).f_globals.get("__name__", "harness"))
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


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricInputs:
    """What a metric sees of one job on one split: its saved outputs and the split's truth.

    Attributes:
        frame: frame probabilities [N, C, T] of the best epoch (after clip gating, as scored).
        clip: clip probabilities [N, C].
        clip_ids: the N clips, in order.
        durations: each clip's audio length in seconds [N].
        reference: the reference events (pandas DataFrame: filename, onset, offset, event_label).
        hop_seconds: seconds between frames (frame t starts at t * hop).
        classes: the C class names, in order.
    """

    frame: Any
    clip: Any
    clip_ids: tuple[str, ...]
    durations: Any
    reference: Any
    hop_seconds: float
    classes: tuple[str, ...]


@dataclass(frozen=True)
class MetricSpec:
    """A metric of a job's final evaluation: a results.csv column per split (val_<name>, test_<name>).

    Attributes:
        name: its column suffix and `report --metric NAME`, e.g. "psds1"; letters, digits and "_".
        label: how tables and figures name it, e.g. "PSDS1".
        compute: MetricInputs -> a number (in %, as every score of the harness), or None where undefined.
            None for the built-ins the harness's own evaluation computes together (harness.study.job).
        threshold_free: computed from the probabilities without a decision threshold (PSDS, AUC).
        bootstrappable: a clip-level bootstrap of it is meaningful (it is a function of per-clip outputs).
    """

    name: str
    label: str
    compute: Callable[[MetricInputs], float | None] | None = None
    threshold_free: bool = False
    bootstrappable: bool = False


metrics: Registry[MetricSpec] = Registry("metric")


def plugin_metrics() -> tuple[MetricSpec, ...]:
    """The registered metrics that a job computes through their `compute` (those of plugins)."""
    return tuple(m for m in (metrics.get(n) for n in metrics) if m.compute is not None)


# --------------------------------------------------------------------------- executors


@dataclass(frozen=True)
class ExecutorSpec:
    """A backend of `run --backend NAME`.

    Attributes:
        name: what --backend says.
        make: harness.study.executors.base.ExecutorSettings -> an Executor (submit, outcomes, cancel) that runs
            the study's tasks while the driver waits; None for a backend that hands the whole study to a
            scheduler and exits (slurm: harness.study.slurm_run).
        description: one line for --help.
    """

    name: str
    make: Callable[[Any], Any] | None
    description: str = ""


executors: Registry[ExecutorSpec] = Registry("backend")


# --------------------------------------------------------------------------- loading plugins

ENTRY_POINT_GROUP = "harness.plugins"


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: how the study named it, its module, and its code identity.

    `identity` is the distribution's version where it is installed, and a digest of the source of its module
    files: it enters the key of every job that uses the plugin, so an edited plugin reruns its jobs.
    """

    ref: str  # as given: "mypkg.models" or "./my_model.py" (relative to the study file), or "entry point NAME"
    module: str  # the module name it is loaded as
    path: str  # its file (a package: its folder)
    identity: str


_loaded: dict[str, Plugin] = {}


def load_plugins(refs: tuple[str, ...] | list[str], base_dir: str | Path = ".", where: str = "") -> tuple[Plugin, ...]:
    """Import the plugins a study names (module names, or .py files relative to `base_dir`), and those
    installed under the entry-point group "harness.plugins"; each registers its names when imported.

    Loading is idempotent (a plugin already loaded is not imported again), so the driver and every worker
    can call it with the same refs.

    Raises:
        PluginError: a plugin that cannot be found or imported, or that fails while registering (which
            plugin, and the error), before any work.
    """
    out = [_load_ref(ref, Path(base_dir), where) for ref in refs]
    return tuple(out)


def load_entry_points() -> tuple[Plugin, ...]:
    """Every installed plugin of the entry-point group "harness.plugins" (a module, imported)."""
    from importlib.metadata import entry_points

    out = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        out.append(_load_ref(point.value.split(":")[0], Path("."), f"entry point {point.name!r}"))
    return tuple(out)


def _load_ref(ref: str, base_dir: Path, where: str) -> Plugin:
    import importlib
    import importlib.util
    import sys

    prefix = f"{where}: " if where else ""
    is_file = ref.endswith(".py") or "/" in ref or "\\" in ref
    path = (base_dir / ref).resolve() if is_file else None
    key = str(path) if path is not None else ref
    if key in _loaded:
        return _loaded[key]
    try:
        if path is not None:
            if not path.is_file():
                raise PluginError(f"{prefix}plugin {ref!r}: no such file {path}; give a .py file (relative to the "
                                  "study file) or an importable module name")
            name = f"harness_plugin_{path.stem}_{_digest(str(path))[:8]}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            _by_value(module)
        else:
            module = importlib.import_module(ref)
    except PluginError:
        raise
    except ModuleNotFoundError as e:
        sys.modules.pop(f"harness_plugin_{path.stem}_{_digest(str(path))[:8]}" if path else "", None)
        raise PluginError(f"{prefix}plugin {ref!r} cannot be imported: {e}; install it (pip install ...) or give "
                          "the path of its .py file") from e
    except Exception as e:  # a broken plugin: its own error, named, not a traceback
        raise PluginError(f"{prefix}plugin {ref!r} failed while loading: {type(e).__name__}: {e}; fix the plugin "
                          "(nothing has run)") from e
    plugin = Plugin(ref=ref, module=module.__name__, path=str(_module_root(module)), identity=code_identity(module))
    _loaded[key] = plugin
    return plugin


def _by_value(module: Any) -> None:
    """A plugin loaded from a file is not importable by name in a worker: its classes and functions travel to
    workers by value (cloudpickle, which loky, Dask and submitit use)."""
    try:
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except (ImportError, ValueError):
        pass


def _digest(text: str | bytes) -> str:
    import hashlib

    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _module_root(module: Any) -> Path:
    file = Path(getattr(module, "__file__", "") or ".")
    return file.parent if file.name == "__init__.py" else file


def code_identity(module: Any) -> str:
    """A plugin's code identity: "<distribution>==<version>;" where it is installed, then a digest of the
    source of its module file (a package: every .py file under its folder, by relative path)."""
    root = _module_root(module)
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    payload = b"".join(str(f.relative_to(root) if root.is_dir() else f.name).encode() + b"\0" + f.read_bytes()
                       for f in files if f.is_file())
    return f"{_distribution(module)}sha256:{_digest(payload)[:16]}"


def _distribution(module: Any) -> str:
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = module.__name__.split(".")[0]
    for dist in packages_distributions().get(top, []):
        try:
            return f"{dist}=={version(dist)};"
        except PackageNotFoundError:
            continue
    return ""


def origin_plugin(origin: str) -> Plugin | None:
    """The loaded plugin whose module registered a name (its `origin`), or None for a built-in."""
    for plugin in _loaded.values():
        if origin == plugin.module or origin.startswith(plugin.module + "."):
            return plugin
    return None


def code_of(model: str) -> tuple[tuple[str, str], ...]:
    """The code identities a job depends on beyond the harness's own: the plugin of its student model, and
    the plugins of every metric it computes; () when it uses built-ins only (its key is then as before)."""
    used = [origin_plugin(models.origin(model))] if model in models else []
    used += [origin_plugin(metrics.origin(m.name)) for m in plugin_metrics()]
    return tuple(sorted({(p.ref, p.identity) for p in used if p is not None}))


def _load_builtins() -> None:
    from harness import builtins  # noqa: F401  (registers the built-ins through the calls above)


_load_builtins()
