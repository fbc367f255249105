"""Stage configs: one frozen dataclass per stage, every field documented, loaded from a TOML profile in configs/.

A profile is a TOML file with one table per stage (``[model]``, ``[pretrain]``, ``[sft]``, ...). Command lines override
any field with ``--set stage.field=value`` (values parsed as TOML, so ``--set pretrain.lr=1e-3`` or
``--set model.arch="gpt2"``). Unknown tables or fields are errors that list the valid names, so a typo never silently
falls back to a default. Derived sizes live in properties computed from the fields, never stored twice.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.modeling import ModelConfig
from training.tokenizer import TokenizerConfig


@dataclass(frozen=True)
class WorldConfig:
    """Where the data comes from."""

    source: str = "world"
    """"world" (the offline simulated world, generated if missing), "files" (JSONL in the public formats under
    ``dir``) or "hub" (the public datasets from the Hugging Face hub; needs network and the 'hub' extra)."""
    dir: str = "runs/world"
    """Folder with tldr/, news/, pretrain.txt (as `prefsum data synth` writes it, or your own files)."""
    seed: int = 0
    """World seed (source = "world")."""
    size: str = "default"
    """World size (source = "world"): tiny, default or large."""


@dataclass(frozen=True)
class BaseModelConfig:
    """Where the policy's starting weights come from (the paper starts from a given pretrained LM)."""

    source: str = "pretrain"
    """"pretrain": train the small base on the world corpus (offline default); "checkpoint": a local prefsum or
    Hugging Face checkpoint folder (``name``); "hub": a Hugging Face hub model id (``name``, needs network);
    "gguf": a GGUF file shipped inside a pip package (``name`` = the package, ``file`` = the file in it)."""
    name: str = ""
    """Checkpoint folder, hub id (e.g. EleutherAI/pythia-1b-deduped) or pip package name, per ``source``."""
    file: str = ""
    """File inside the package for source = "gguf" (e.g. the .gguf file name)."""
    revision: str = "main"
    """Hub revision (source = "hub")."""
    dtype: str = "float32"
    """Weights dtype for training: float32, bfloat16 (GPUs) or float16."""
    eos_token: str = ""
    """Override the model's EOS token ("" keeps it). SmolLM2's GGUF declares <|im_start|>, a start token, as EOS."""

    def __post_init__(self) -> None:
        if self.source not in ("pretrain", "checkpoint", "hub", "gguf"):
            raise ValueError(f"base.source must be pretrain, checkpoint, hub or gguf, got {self.source!r}")
        if self.source != "pretrain" and not self.name:
            raise ValueError(f"base.source = {self.source!r} needs base.name")


@dataclass(frozen=True)
class PretrainConfig:
    """Causal-LM pretraining of the small base model on ``pretrain.txt`` (the offline default only)."""

    steps: int = 3000
    """Optimizer steps."""
    batch_size: int = 16
    """Sequences per step."""
    seq_len: int = 256
    """Tokens per sequence (random windows of the tokenized corpus)."""
    lr: float = 3e-3
    """Peak learning rate (AdamW)."""
    warmup_steps: int = 100
    """Linear warm-up steps, then cosine decay to ``lr * min_lr_ratio``."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to norms and biases)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    eval_every: int = 250
    """Steps between validation-loss evaluations (and checkpoints for resume)."""
    eval_batches: int = 8
    """Batches of held-out text per evaluation."""
    copy_warmup_steps: int = 0
    """Steps at the start spent only on the synthetic copy task (a random token span shown twice), so the copy
    (induction) circuit forms before world text; measured to appear after ~2,500 steps at lr 3e-3. 0 turns it off."""
    copy_fraction: float = 0.0
    """After the warm-up, the share of each batch that is synthetic copy sequences (keeps the circuit alive)."""
    copy_span: tuple[int, int] = (8, 32)
    """Min and max length of a copied span in the synthetic copy sequences."""
    seed: int = 0
    """Seed for initialisation and batch sampling."""
    threads: int = 2
    """torch intra-op threads (set deliberately; 2 cores here)."""


@dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning on reference summaries: loss on response tokens only."""

    steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 16
    """Examples per step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW), warm-up then cosine."""
    warmup_steps: int = 50
    """Linear warm-up steps."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    max_query_tokens: int = 512
    """Query budget (the paper's 512); posts are truncated the paper's way."""
    max_response_tokens: int = 48
    """Response budget (48 in the paper, 53 in the N+ recipe), EOS included."""
    eval_every: int = 250
    """Steps between validation loss, printed samples and resume checkpoints."""
    eval_examples: int = 256
    """Validation examples per evaluation."""
    n_samples: int = 3
    """Greedy samples printed per evaluation."""
    seed: int = 0
    """Seed for shuffling."""
    threads: int = 2
    """torch intra-op threads."""


@dataclass(frozen=True)
class RMConfig:
    """Reward model: a scalar head on the SFT backbone, Bradley-Terry loss on labeler comparisons."""

    epochs: float = 1.0
    """Passes over the training comparisons (the paper trains one epoch to avoid overfitting)."""
    batch_size: int = 16
    """Comparisons per step (each is two sequences)."""
    lr: float = 5e-4
    """Peak learning rate (AdamW), warm-up then cosine."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    max_query_tokens: int = 512
    """Query budget, as for SFT."""
    max_response_tokens: int = 48
    """Summaries longer than this (EOS included) are cut and end with EOS."""
    eval_every: int = 100
    """Steps between validation accuracy and resume checkpoints."""
    seed: int = 0
    """Seed for shuffling."""
    threads: int = 2
    """torch intra-op threads."""
    pooling: str = "last"
    """Where the reward is read: "last" = the head at the EOS (the paper's RM, right for deep backbones); "sum" = the
    head summed over the response's positions and its EOS. "sum" suits shallow backbones (the tiny profile's 2
    layers): each position can check its own token against the post, and the sum adds the checks up, where one
    position cannot gather them (docs/ppo.md measures both). Stored in the checkpoint; export, PPO, best-of-N and
    the service read it from there."""

    def __post_init__(self) -> None:
        if self.pooling not in ("last", "sum"):
            raise ValueError(f'rm.pooling must be "last" or "sum", got {self.pooling!r}')


@dataclass(frozen=True)
class PPOConfig:
    """PPO against the reward model with a per-token KL penalty to the frozen SFT policy (Stiennon et al. 2020,
    App. B; Huang et al. 2024, the N+ recipe). The real profiles carry the recipe's values; tiny ones are sized for
    minutes on a CPU."""

    steps: int = 200
    """PPO iterations (rollout + optimisation). Episodes = steps * rollout_batch_size."""
    rollout_batch_size: int = 64
    """Queries sampled per iteration (one response each)."""
    minibatches: int = 2
    """Minibatches per PPO epoch (the rollout batch is split into this many)."""
    ppo_epochs: int = 4
    """Passes over each rollout batch."""
    micro_batch_size: int = 0
    """Sequences per forward/backward inside a minibatch (gradient accumulation, for memory); 0 = the whole
    minibatch at once. The update is the same either way."""
    lr: float = 3e-6
    """Learning rate (AdamW, constant after warm-up) for policy and value network together."""
    warmup_steps: int = 0
    """Linear warm-up iterations."""
    lr_decay: bool = True
    """Anneal the learning rate linearly to 0 over ``steps`` (the N+ recipe does)."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (policy and value separately)."""
    temperature: float = 0.7
    """Sampling temperature for rollouts; logprobs are computed from logits / temperature as well."""
    max_query_tokens: int = 512
    """Query budget (truncated the paper's way)."""
    max_response_tokens: int = 48
    """Response budget; a response without EOS within it gets ``missing_eos_penalty`` as its score."""
    missing_eos_penalty: float = -1.0
    """Score given to a response that never emits EOS (N+ recipe: -1). Set to 0 with ``penalize_missing_eos=false``."""
    penalize_missing_eos: bool = True
    """Replace the RM score of a truncated (no-EOS) response by ``missing_eos_penalty``."""
    kl_coef: float = 0.05
    """Initial (or fixed) beta of the per-token KL penalty beta * (log pi - log pi_SFT)."""
    adaptive_kl: bool = False
    """Adapt beta towards ``kl_target`` (Ziegler et al. 2019) instead of keeping it fixed."""
    kl_target: float = 6.0
    """Target KL per response (nats) for the adaptive controller."""
    kl_horizon: int = 10000
    """Horizon (episodes) of the adaptive controller."""
    gamma: float = 1.0
    """Discount over response tokens."""
    lam: float = 0.95
    """GAE lambda."""
    cliprange: float = 0.2
    """PPO policy ratio clip."""
    cliprange_value: float = 0.2
    """Value clip around the rollout's values."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    whiten_rewards: bool = False
    """Whiten the per-token rewards over the batch before GAE (optional in N+)."""
    dense_rewards: bool = False
    """With a sum-pooled RM (rm.pooling = "sum"): give each response token the RM head's output at its position
    (they sum to the sequence's score) instead of the whole score on the EOS. The objective is the same (gamma 1);
    the credit for a good or bad token lands on that token, which GAE with lambda < 1 otherwise blurs."""
    whiten_advantages: bool = True
    """Whiten advantages over the batch (standard PPO)."""
    eval_every: int = 25
    """Iterations between logged samples, resume checkpoints and a quick greedy evaluation."""
    n_samples: int = 2
    """Samples printed (with score and KL) at each evaluation."""
    seed: int = 0
    """Seed for query sampling and rollouts."""
    threads: int = 2
    """torch intra-op threads."""

    def __post_init__(self) -> None:
        if self.rollout_batch_size % self.minibatches:
            raise ValueError(
                f"ppo.rollout_batch_size ({self.rollout_batch_size}) must be divisible by ppo.minibatches "
                f"({self.minibatches})"
            )
        if self.temperature <= 0:
            raise ValueError(f"ppo.temperature must be > 0 for sampled rollouts, got {self.temperature}")

    @property
    def minibatch_size(self) -> int:
        return self.rollout_batch_size // self.minibatches


# --- pipeline stages (label, export, eval): added for `prefsum pipeline` (issue 9) ---------------------------------


@dataclass(frozen=True)
class LabelConfig:
    """Comparison rounds of the pipeline's label stage: sample summaries from the pretrained and SFT policies, pair
    them (with the reference) and have the simulated labeler pool choose. With world.source = "hub" the stage takes
    the public comparisons instead and these fields do not apply."""

    rounds: int = 2
    """Comparison rounds; round K labels training posts [(K-1)*posts, K*posts)."""
    posts: int = 2000
    """Posts per round."""
    temperature: float = 0.7
    """Sampling temperature of the policies."""
    samples_per_policy: int = 1
    """Samples per policy per post."""
    include_reference: bool = True
    """Put the reference summary in the candidate pairs."""
    max_query_tokens: int = 512
    """Query budget."""
    max_response_tokens: int = 48
    """Response budget."""
    seed: int = 0
    """Sampling and pairing seed."""
    threads: int = 2
    """torch / ONNX Runtime intra-op threads."""
    engine: str = "onnx"
    """How the policies are sampled: "onnx" exports them to bundles first (seconds) and samples in ONNX Runtime,
    several times faster on a CPU; "torch" samples the checkpoints directly."""

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.posts < 1:
            raise ValueError(f"label.rounds and label.posts must be >= 1, got {self.rounds} and {self.posts}")
        if self.engine not in ("onnx", "torch"):
            raise ValueError(f'label.engine must be "onnx" or "torch", got {self.engine!r}')


@dataclass(frozen=True)
class ExportConfig:
    """The pipeline's export stage: one ONNX bundle per policy (pretrained, sft, ppo) and one for the RM."""

    quantize: str = ""
    """"" (float32) or "int8" (dynamic int8 weights, for CPUs)."""
    fp16: bool = False
    """float16 weights (for CUDA GPUs)."""

    def __post_init__(self) -> None:
        if self.quantize not in ("", "int8"):
            raise ValueError(f'export.quantize must be "" or "int8", got {self.quantize!r}')


@dataclass(frozen=True)
class EvalConfig:
    """The pipeline's eval stage: greedy summaries of held-out TL;DR posts (pairwise vs the reference) and news
    articles (1-7 axes) from every policy bundle and the baselines."""

    judge: str = "sim"
    """"sim" (the simulated labelers; offline world only) or "rm" (the reward bundle)."""
    n: int = 200
    """TL;DR test posts."""
    news_n: int = 100
    """News test articles (0 skips the transfer evaluation)."""
    seed: int = 0
    """Judging seed."""
    threads: int = 2
    """ONNX Runtime intra-op threads."""
    best_of: int = 0
    """N > 1 adds the policy "best_of_N": N samples from the SFT bundle at ``best_of_temperature``, the reward
    model's pick (the paper's best-of-N baseline); 0 leaves it out."""
    best_of_temperature: float = 0.7
    """Sampling temperature of the best-of-N candidates."""

    def __post_init__(self) -> None:
        if self.best_of < 0 or self.best_of == 1:
            raise ValueError(f"eval.best_of must be 0 (off) or N >= 2, got {self.best_of}")
        if self.judge not in ("sim", "rm"):
            raise ValueError(f'eval.judge must be "sim" or "rm" in the pipeline, got {self.judge!r}')


# --- end of pipeline stages -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A whole run's settings."""

    name: str = "tiny"
    """Profile name (recorded in every checkpoint)."""
    requires_cuda: bool = False
    """The profile is sized for CUDA GPUs: training stages refuse to start without one (rather than run for weeks)."""
    world: WorldConfig = field(default_factory=WorldConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    base: BaseModelConfig = field(default_factory=BaseModelConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rm: RMConfig = field(default_factory=RMConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    label: LabelConfig = field(default_factory=LabelConfig)  # pipeline stages (issue 9)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    """A profile or an override names an unknown field or gives a value of the wrong type."""


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {tp}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: expected one of {typing.get_args(tp)}, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    return value


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"unknown field '{where}{key}'; valid fields: {', '.join(fields)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key}: expected a table, got {value!r}")
            kwargs[key] = _build(tp, value, f"{where}{key}.")
        else:
            kwargs[key] = _check_type(value, tp, f"{where}{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or 'profile'}: {e}") from e


def _apply_override(raw: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like stage.field=value (e.g. pretrain.lr=1e-3)")
    key, text = override.split("=", 1)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word: treat as a string (model.arch=gpt2)
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a table")
    node[parts[-1]] = value


def load_profile(path: str | Path | None = None, overrides: list[str] | None = None) -> Profile:
    """Read a TOML profile (built-in defaults when ``path`` is None), then apply ``stage.field=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"profile {p} does not exist; the shipped profiles are in configs/")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from e
    for override in overrides or []:
        _apply_override(raw, override)
    return _build(Profile, raw, "")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-able data (for prefsum.json)."""
    return dataclasses.asdict(cfg)
