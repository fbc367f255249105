"""Small causal LMs built from a config (no hub, no downloads): the offline base models and the test models.

Two families, both standard Hugging Face causal LMs so the ONNX export path (optimum) handles them unchanged:
``gpt2`` (learned absolute positions) and ``llama`` (RoPE; measured ~1.8x GPT-2's tokens/s at tiny size on this CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a from-scratch causal LM."""

    arch: Literal["gpt2", "llama"] = "llama"
    """Model family: "llama" (RoPE, RMSNorm, SwiGLU) or "gpt2" (learned absolute positions)."""
    n_layer: int = 2
    """Transformer blocks."""
    d_model: int = 128
    """Hidden size."""
    n_head: int = 4
    """Attention heads; must divide d_model."""
    d_ff: int | None = None
    """MLP inner size; None means 4 * d_model (gpt2) or 8/3 * d_model rounded to 32 (llama)."""
    max_positions: int = 1024
    """Longest sequence (query + response)."""
    dropout: float = 0.0
    """Dropout everywhere; RLHF recipes turn it off (it makes logprobs of the same tokens disagree)."""
    tie_embeddings: bool = True
    """Share input and output embeddings (saves parameters at tiny size)."""
    rope_theta: float = 10000.0
    """(llama) RoPE base. Large values (1e6) leave slowly rotating pairs for content matching over long spans."""
    copy_circuit: bool = False
    """(llama, >= 2 layers, >= 4 heads of size >= 32) Initialise a working copy (induction) circuit: the
    previous-token head below in layer 0, and three heads of layer 1 that attend to the position after an earlier
    occurrence of the current token and copy its token into the residual stream; the MLPs and the other heads start
    with zero output. Without it a tiny model finds copying only after a long loss plateau (docs/copying.md)."""
    prev_token_head: bool = False
    """(llama only) Initialise head 0 of layer 0 as a previous-token head: a constant embedding dimension feeds
    content-independent queries/keys whose RoPE phases peak one position back. This seeds half of the copy
    (induction) circuit, which a tiny model otherwise finds only after a long loss plateau. Trained freely after."""

    def __post_init__(self) -> None:
        if self.arch not in ("gpt2", "llama"):
            raise ValueError(f"model.arch must be 'gpt2' or 'llama', got {self.arch!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.n_head ({self.n_head})")
        if (self.prev_token_head or self.copy_circuit) and self.arch != "llama":
            raise ValueError("model.prev_token_head and model.copy_circuit need model.arch = 'llama' (RoPE)")
        if self.copy_circuit:
            if self.n_layer < 2 or self.n_head < 4 or self.d_model // self.n_head < 32:
                raise ValueError("model.copy_circuit needs n_layer >= 2, n_head >= 4 and head size >= 32")
            if self.rope_theta < 1e5:
                raise ValueError(
                    "model.copy_circuit needs model.rope_theta >= 1e5 (slow RoPE pairs match content "
                    "across long spans); set model.rope_theta = 1e6"
                )

    @property
    def ff_size(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.arch == "gpt2":
            return 4 * self.d_model
        return max(32, int(8 * self.d_model / 3) // 32 * 32)


def hf_config(cfg: ModelConfig, vocab_size: int, eos_id: int, pad_id: int):
    """The transformers config object for ``cfg`` with the tokenizer's special ids."""
    from transformers import GPT2Config, LlamaConfig  # noqa: PLC0415

    if cfg.arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=cfg.max_positions,
            n_embd=cfg.d_model,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_inner=cfg.ff_size,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            tie_word_embeddings=cfg.tie_embeddings,
        )
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ff_size,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_head,
        max_position_embeddings=cfg.max_positions,
        rope_theta=cfg.rope_theta,
        attention_dropout=cfg.dropout,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=cfg.tie_embeddings,
    )


def build_causal_lm(cfg: ModelConfig, vocab_size: int, eos_id: int, pad_id: int, seed: int = 0):
    """A freshly initialised causal LM (deterministic for a seed)."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(cfg, vocab_size, eos_id, pad_id))
    if cfg.copy_circuit:
        init_copy_circuit(model)
    elif cfg.prev_token_head:
        init_prev_token_head(model)
    return model


def init_prev_token_head(model, sharpness: float = 12.0, const: float = 1.0) -> None:
    """Make head 0 of layer 0 of a Llama model attend (almost only) to the previous position.

    The last embedding dimension is set to ``const`` for every token; after the input RMSNorm it is a nearly constant
    input n_c. Head 0's query and key read only that dimension, so q and k are the same vectors a, b at every
    position, rotated by RoPE: for each frequency pair i the score is |a_i||b_i| cos(beta_i + (t - m) theta_i),
    largest at t = m - 1 when beta_i = theta_i. Summed over pairs, the previous position beats its neighbours by
    ``sharpness`` (softmax logits). The constant dimension adds the same amount to every logit of the tied output
    layer, so it changes no prediction.
    """
    import torch  # noqa: PLC0415

    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    half = head_dim // 2
    theta = cfg.rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / head_dim)  # (half,)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight  # (V, d)
        emb[:, -1] = const
        rms = torch.sqrt((emb.float() ** 2).mean(dim=1)).mean()
        n_c = const / rms.item()  # the constant dimension after RMSNorm (norm weight 1 at init)
        gap = float((1 - torch.cos(theta)).sum())  # score gap between offsets 1 and 0 or 2, per unit scale
        scale = sharpness / gap  # wanted |a||b| * n_c^2 * attention scaling per pair
        ab = scale / (n_c**2 * head_dim**-0.5)
        s = ab**0.5
        attn = model.model.layers[0].self_attn
        q, k = attn.q_proj.weight, attn.k_proj.weight  # (n_head * head_dim, d)
        q[:head_dim].zero_()
        k[:head_dim].zero_()
        # rotate_half pairs component i with component i + half
        q[:half, -1] = s
        k[:half, -1] = (s * torch.cos(theta)).to(k.dtype)
        k[half:head_dim, -1] = (s * torch.sin(theta)).to(k.dtype)


def count_parameters(model) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def init_copy_circuit(model, n_match: int = 16, match_logits: float = 12.0, copy_gain: float = 4.0) -> None:
    """Initialise a Llama model so that it already copies: an induction circuit built by hand.

    Residual layout (d = d_model): content in dims [0, c) with c = d - 32; the previous token's signature in
    [c, c + n_match); a constant in the last dim. Layer 0 head 0 attends one position back (init_prev_token_head) and
    writes P n[content] (P: n_match x c, orthonormal rows) into the signature dims. Layer 1 heads 0-2 match the
    current token's P n[content] (queries) against the signature (keys) on the slowest RoPE pairs, which barely rotate
    over a few hundred positions, so the match is by content, not by distance; their values copy the attended
    token's content back into the content dims (three heads of size 32 cover 96 content dims, so layer 1's copy is
    the identity on content, scaled by ``copy_gain``). Everything else writes nothing at first (MLP down
    projections and unused heads' output rows are zero); training starts from a model that continues a repeated
    span, then learns the rest around it.
    """
    import torch  # noqa: PLC0415

    cfg = model.config
    d, n_head = cfg.hidden_size, cfg.num_attention_heads
    hd = d // n_head
    half = hd // 2
    c = d - 32  # content dims
    n_copy_heads = -(-c // hd)  # heads needed to copy all content dims
    if n_copy_heads > n_head or n_match > 2 * (half // 2) or c <= n_match:
        raise ValueError(f"copy circuit does not fit d_model={d}, n_head={n_head}")
    gen = torch.Generator().manual_seed(1234)
    P = torch.linalg.qr(torch.randn(c, n_match, generator=gen, dtype=torch.float64))[0].T  # (n_match, c)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight  # (V, d)
        emb[:, c:] = 0
        init_prev_token_head(model)  # also sets the constant last dim
        rms = torch.sqrt((emb.double() ** 2).mean(dim=1)).mean().item()
        for layer in model.model.layers:
            layer.mlp.down_proj.weight.zero_()
        a0, a1 = model.model.layers[0].self_attn, model.model.layers[1].self_attn
        # layer 0: only head 0 writes, its value is the content signature
        a0.v_proj.weight[:hd].zero_()
        a0.v_proj.weight[:n_match, :c] = P.to(a0.v_proj.weight.dtype)
        a0.o_proj.weight.zero_()
        a0.o_proj.weight[c : c + n_match, :n_match] = torch.eye(n_match)
        # layer 1: heads 0..n_copy_heads-1 match on the slowest RoPE pairs and copy content
        slow = list(range(half - n_match // 2, half))
        dims = slow + [i + half for i in slow]  # rotate_half pairs component i with i + half
        n_c2 = ((emb[:, :c].double() / rms) ** 2).sum(dim=1).mean().item()  # |n[content]|^2
        typical = (n_match / c) * n_c2  # q.k of a match per unit query scale
        b = match_logits / (typical * hd**-0.5)
        for W in (a1.q_proj.weight, a1.k_proj.weight, a1.v_proj.weight, a1.o_proj.weight):
            W.zero_()
        for h in range(n_copy_heads):
            rows = [h * hd + j for j in dims]
            a1.q_proj.weight[rows, :c] = (b * P).to(a1.q_proj.weight.dtype)
            a1.k_proj.weight[rows, c : c + n_match] = torch.eye(n_match)
            lo, hi = h * hd, min(c, (h + 1) * hd)
            a1.v_proj.weight[h * hd : h * hd + (hi - lo), lo:hi] = torch.eye(hi - lo)
            a1.o_proj.weight[lo:hi, h * hd : h * hd + (hi - lo)] = copy_gain * rms * torch.eye(hi - lo)
