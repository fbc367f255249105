"""Test helpers: tiny causal LMs built from configs (no hub, no downloads)."""

from training.modeling import ModelConfig, build_causal_lm


def tiny_gpt2(tokenizer, n_layer: int = 2, d_model: int = 32, n_head: int = 2, max_positions: int = 256, seed: int = 0):
    cfg = ModelConfig(arch="gpt2", n_layer=n_layer, d_model=d_model, n_head=n_head, max_positions=max_positions)
    return build_causal_lm(cfg, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, seed=seed)


def tiny_llama(
    tokenizer, n_layer: int = 2, d_model: int = 32, n_head: int = 2, max_positions: int = 256, seed: int = 0
):
    cfg = ModelConfig(arch="llama", n_layer=n_layer, d_model=d_model, n_head=n_head, max_positions=max_positions)
    return build_causal_lm(cfg, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, seed=seed)
