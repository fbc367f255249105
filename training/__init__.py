"""prefsum training: task formats, data loaders, tokenizer, pretrain, SFT, reward model, PPO, export.

Only ``training.task`` and ``training.data`` are imported by the service and evals; neither imports torch.
"""
