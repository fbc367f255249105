"""The offline world: a procedurally generated TL;DR / CNN-DM benchmark with known ground truth.

``synth(out_dir, seed, size)`` writes posts, news, a pretraining corpus and the hidden frames (see ``synth.py`` and
docs/world.md). Stdlib only; deterministic for a seed. Judges (``evals.gold``) read frames.jsonl, never this package.
"""

from .pretrain import DOC_SEPARATOR
from .synth import FORMAT_VERSION, SIZES, WorldSize, synth

__all__ = ["DOC_SEPARATOR", "FORMAT_VERSION", "SIZES", "WorldSize", "synth"]
