"""Typed training configuration: defaults, then a YAML file, then dotted overrides (``optim.lr=3e-4``).

Choices are ``Literal`` types, checked in one pass (:func:`validate`) when a config is built, with a one-line error
naming the key and the allowed values. The resolved configuration is saved next to each run's outputs, so a run
can be repeated exactly.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Balance = Literal["sampler", "source", "weights", "none"]
InputMode = Literal["ela", "rgb", "rgb+ela"]
Resize = Literal["squash", "crop"]
PatchAggregate = Literal["mean", "max", "topk"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["inverse", "cosine", "step", "plateau", "none"]
PipelineSchedule = Literal["gpipe", "1f1b"]
Strategy = Literal["none", "ddp", "localsgd", "pipeline", "tensor"]
Keep = Literal["best", "last"]
#: The kinds of pseudo-fake (:data:`fakescope.data.pseudo.KINDS`; named here so loading a config stays light).
PseudoKind = Literal["blend", "copy_move", "upsample"]
PSEUDO_KINDS: tuple[str, ...] = typing.get_args(PseudoKind)


@dataclass
class DataConfig:
    #: One or more labelled folders; each is split on its own, so every set keeps its own validation split.
    path: list[str] = field(default_factory=list)
    val_fraction: float = 0.2
    seed: int = 0
    #: ``sampler`` (draw classes equally often), ``source`` (each folder in proportion to the square root of its
    #: size, its classes equally often), ``weights`` (weighted loss) or ``none``.
    balance: Balance = "sampler"
    #: Share of each folder's fake draws made on the fly from its own training reals (:mod:`fakescope.data.pseudo`:
    #: self-blends, copy-moves, up-sampling traces); a real-only folder's fakes are all pseudo-fakes. 0: none.
    pseudo_fakes: float = 0.0
    #: Which kinds of pseudo-fake are drawn (each equally often): of ``blend``, ``copy_move``, ``upsample``.
    pseudo_kinds: list[PseudoKind] = field(default_factory=lambda: list(PSEUDO_KINDS))
    workers: int = 2
    cache: bool = True
    cache_dir: str | None = None
    #: Use at most this many images per class (quick experiments, tests).
    max_per_class: int | None = None


@dataclass
class ModelConfig:
    name: str = "ela-cnn"
    input_mode: InputMode | None = None
    size: int | None = None
    #: False, True (packaged / cached ImageNet weights) or a path to a weights file.
    pretrained: Any = False
    #: Override of the detector's resize mode: ``squash`` (whole image resized) or ``crop`` (native-resolution
    #: windows, scored as a patch detector). None keeps the detector's own.
    resize: Resize | None = None
    #: The input cut into squares of this side (px, at the model's input size) in one fixed random order, in training
    #: and scoring: a patch-shuffle detector (``Preprocess.shuffle``). 0: the input as it is.
    patch_shuffle: int = 0
    #: Patch detectors (trained on native-resolution crops): how an image's patch scores become one score
    #: (``mean``, ``max`` or ``topk``), and how many patches score an image at most. Stored in the checkpoint, used
    #: by scan/evaluate/serve and by the final validation (threshold, metrics); ignored by whole-image detectors.
    patch_aggregate: PatchAggregate = "mean"
    patch_top_k: int = 3
    max_patches: int = 16


@dataclass
class OptimConfig:
    name: Optimizer = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    #: ``inverse`` is Keras' classic ``lr / (1 + decay * step)``; also cosine, step, plateau, none.
    schedule: Schedule = "inverse"
    lr_decay: float = 1e-6
    warmup_epochs: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    grad_clip: float | None = None
    #: Layer-wise learning-rate decay (timm's ``param_groups_layer_decay``): the last block trains at ``lr``, each
    #: block before it at ``layer_decay`` times the next one's, so early ImageNet features move least. None: off.
    layer_decay: float | None = None


@dataclass
class AugmentConfig:
    """Robustness augmentation, applied to training images before preprocessing; each with a probability."""

    enabled: bool = True
    flip_p: float = 0.5
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 100)
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 3.0)
    rescale_p: float = 0.3
    rescale: tuple[float, float] = (0.5, 1.0)
    color_p: float = 0.3
    #: Share of training images whose grid of ``patch_shuffle_size``-px squares (at the model's input size) is put
    #: in a random order, mask with it: local traces kept, the scene's layout broken (Zheng et al., "Breaking
    #: Semantic Artifacts for Generalized AI-generated Image Detection", NeurIPS 2024). Scoring sees whole images
    #: unless ``model.patch_shuffle`` is set.
    patch_shuffle_p: float = 0.0
    patch_shuffle_size: int = 32


@dataclass
class ParallelConfig:
    """Options of the parallel strategies (``TrainConfig.strategy``); see ``fakescope.engine.parallel``."""

    #: localsgd: average the replicas every k optimizer steps, after this many synchronous (DDP) steps.
    localsgd_period: int = 4
    localsgd_warmup: int = 0
    #: pipeline: micro-batches per batch, ``gpipe`` or ``1f1b``, and the module names where stages begin
    #: (empty: cut where the forward FLOPs are most evenly shared).
    microbatches: int = 4
    schedule: PipelineSchedule = "gpipe"
    pipeline_split: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: ``none`` (one process) or a torch.distributed strategy run under torchrun / ``--nproc``: ``ddp``
    #: (synchronous data parallel), ``localsgd``, ``pipeline`` or ``tensor``. ``batch_size`` is the global batch.
    strategy: Strategy = "none"
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    epochs: int = 30
    batch_size: int = 32
    patience: int = 5
    #: The weights a run keeps in ``best.safetensors``: ``best``, the epoch of lowest validation loss, or ``last``,
    #: the end of the schedule (no choice of weights made on the validation split the run's metrics come from).
    keep: Keep = "best"
    label_smoothing: float = 0.0
    #: Weight of the pixel-level loss on tampering masks (0: off). Sets with a ``masks/`` folder (CASIA v1.0,
    #: ``fakescope synth`` output) also teach a training-only head *where* each image was tampered; see
    #: ``fakescope.engine.pixel``. Sets without masks train on the image label alone.
    mask_loss: float = 0.0
    #: Weight of the reversed gradient from a source classifier on the pooled features (0: off): the backbone is
    #: pushed to make the ``data.path`` folders indistinguishable (:mod:`fakescope.engine.adversary`).
    source_adversary: float = 0.0
    device: str = "auto"
    #: Mixed precision: bf16 autocast on CPU, fp16 with a GradScaler on CUDA.
    amp: bool = False
    ema: float | None = None
    calibrate: bool = True
    #: The detector also checks its input for a copy pasted inside the image and adds that evidence to its scores
    #: (:mod:`fakescope.forensics.copymove`, SIFT self-matching: nothing to train; the shipped default does). The
    #: threshold and validation metrics are then those of the final scores
    #: (:func:`fakescope.engine.threshold.threshold_final_scores`).
    copy_move: bool = False
    #: The detector's probability is the mean of its network's and that of its nearest training images (the
    #: familiarity description keeps the training images' classes: :mod:`fakescope.familiarity`; nothing more to
    #: train). Measured to raise ROC-AUC on sets the model never saw; the threshold and validation metrics are then
    #: those of the final scores. Whole-image detectors with stage statistics (timm backbones).
    neighbour_score: bool = False
    #: Ship the threshold that flags at most this share of the validation reals of every ``data.path`` folder
    #: (None: 0.5). Analysts pay for false alarms on genuine photos; a detector should say how many it raises.
    target_fpr: float | None = None
    seed: int = 0
    out: str = "runs/latest"
    resume: str | None = None
    #: Also log every epoch's row to TensorBoard under ``<out>/tensorboard`` (``pip install 'fakescope[tensorboard]'``).
    tensorboard: bool = False


def _coerce(value: Any, hint: Any) -> Any:
    """Turn a command-line string (or a YAML value) into the field's type."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional[X] and ``X | None``
        if type(None) in typing.get_args(hint) and (value is None or str(value).lower() in ("none", "null")):
            return None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else Any
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value  # a choice stays as written ("none" is a choice, not null); validate() checks it
    if origin in (list, tuple):
        return _coerce_sequence(value, origin, args[0] if args else Any)
    if not isinstance(value, str):
        return value
    if hint is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if hint in (int, float, str):
        return hint(value)
    return yaml.safe_load(value)  # Any: let YAML decide (true, 3, a path)


def _coerce_sequence(value: Any, origin: type, item: Any) -> list | tuple:
    """``"30,100"``, ``"(30, 100)"`` or ``"[a, b]"`` (a single list value without brackets) or a YAML list."""
    if isinstance(value, str):
        text = value.strip()
        inner = text.strip("()[] ")
        if origin is tuple or text.startswith("["):
            value = [p.strip() for p in inner.split(",")] if inner else []
        else:
            value = [text]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list, got {value!r}")
    return origin(_coerce(v, item) for v in value)


def _set(obj: Any, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        if not dataclasses.is_dataclass(obj) or not hasattr(obj, part):
            raise KeyError(f"unknown config key {dotted!r}")
        obj = getattr(obj, part)
    hints = typing.get_type_hints(type(obj))
    if leaf not in hints:
        raise KeyError(f"unknown config key {dotted!r}; valid keys here: {', '.join(hints)}")
    if dataclasses.is_dataclass(getattr(obj, leaf)):
        if not isinstance(value, dict):
            raise ValueError(f"{dotted!r} is a section, not a value; set its keys, e.g. --{dotted}.KEY VALUE")
        for k, v in value.items():
            _set(obj, f"{leaf}.{k}", v)
        return
    setattr(obj, leaf, _coerce(value, hints[leaf]))


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    for key, value in overrides.items():
        _set(cfg, key, value)
    return cfg


def parse_dotted_args(args: list[str]) -> dict[str, str]:
    """``['--optim.lr', '3e-4', '--augment.enabled=false']`` -> ``{'optim.lr': '3e-4', 'augment.enabled': 'false'}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r}; overrides look like --section.key VALUE")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ValueError(f"override {arg} needs a value")
            i += 1
            value = args[i]
        out[key.replace("-", "_")] = value
        i += 1
    return out


def choices(hint: Any) -> tuple | None:
    """The values a ``Literal`` (or optional ``Literal``) field allows, or each item of a list of them; None for any
    other field."""
    if typing.get_origin(hint) in (list, tuple):
        return choices(typing.get_args(hint)[0]) if typing.get_args(hint) else None
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        literal = [choices(a) for a in typing.get_args(hint) if typing.get_origin(a) is Literal]
        if literal and type(None) in typing.get_args(hint):
            return (*literal[0], None)
    return None


def validate(cfg: Any, prefix: str = "") -> Any:
    """Check every choice of ``cfg`` (and of its sections) in one pass; ValueError naming the key and the values
    it allows. Returns ``cfg``."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
        elif (allowed := choices(hints[f.name])) is None:
            continue
        elif isinstance(value, (list, tuple)):
            if not value or any(v not in allowed for v in value):
                raise ValueError(f"config key {key}: {value!r} must name one or more of {', '.join(map(str, allowed))}")
        elif value not in allowed:
            raise ValueError(f"config key {key}: {value!r} is not one of {', '.join(map(str, allowed))}")
    return cfg


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides``; then :func:`validate`."""
    cfg = TrainConfig()
    if path is not None:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must be a YAML mapping")
        for key, value in data.items():
            _set(cfg, key, value)
    return check_patch_shuffle(check_source_adversary(check_pseudo_fakes(validate(apply_overrides(cfg, overrides or {})))))


def check_pseudo_fakes(cfg: TrainConfig) -> TrainConfig:
    """``data.pseudo_fakes`` is a share of each folder's fake draws, so it needs per-folder draws (``source``)."""
    share = cfg.data.pseudo_fakes
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"config key data.pseudo_fakes: {share!r} is not a share between 0 and 1")
    if share > 0 and cfg.data.balance != "source":
        raise ValueError(f"config key data.pseudo_fakes: {share!r} needs data.balance source "
                         f"(got {cfg.data.balance!r}): the share is drawn per folder")
    return cfg


def check_patch_shuffle(cfg: TrainConfig) -> TrainConfig:
    """``augment.patch_shuffle_p`` is a share; a detector that reads its squares in a fixed order
    (``model.patch_shuffle``) is shuffled in training on the same squares, or the two orders would cut across each
    other."""
    aug, side = cfg.augment, cfg.model.patch_shuffle
    if not 0.0 <= aug.patch_shuffle_p <= 1.0:
        raise ValueError(f"config key augment.patch_shuffle_p: {aug.patch_shuffle_p!r} is not a share between 0 and 1")
    if aug.patch_shuffle_size < 1 or side < 0:
        raise ValueError("config keys augment.patch_shuffle_size and model.patch_shuffle are square sides in px "
                         f"(got {aug.patch_shuffle_size!r} and {side!r})")
    if side and aug.patch_shuffle_p > 0 and aug.patch_shuffle_size != side:
        raise ValueError(f"config key augment.patch_shuffle_size: {aug.patch_shuffle_size!r} must equal "
                         f"model.patch_shuffle ({side!r}): training shuffles the squares the detector reads")
    return cfg


def check_source_adversary(cfg: TrainConfig) -> TrainConfig:
    """The source head tells the ``data.path`` folders apart, so it needs two of them at least."""
    if cfg.source_adversary < 0:
        raise ValueError(f"config key source_adversary: {cfg.source_adversary!r} is negative")
    if cfg.source_adversary > 0 and len(cfg.data.path) < 2:
        raise ValueError(f"config key source_adversary: {cfg.source_adversary!r} needs two data.path folders at "
                         f"least (got {len(cfg.data.path)}): it learns to make them indistinguishable")
    return cfg


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'optim': {'lr': 1e-3}}`` -> ``{'optim.lr': 1e-3}``: the dotted keys of ``--section.key`` overrides."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        out |= flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return out


def config_differences(a: TrainConfig, b: TrainConfig, ignore: tuple[str, ...] = ("out",)) -> list[str]:
    """``"key: a's value vs b's"`` for each dotted key (outside ``ignore``) where two resolved configs differ.

    A config saved by an older fakescope, loaded with ``load_config(path)``, has the options added since at their
    defaults, the behaviour it was trained with.
    """
    fa, fb = flatten(to_dict(a)), flatten(to_dict(b))
    return [f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in sorted(fa.keys() | fb.keys())
            if k not in ignore and fa.get(k) != fb.get(k)]


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
