"""Data: the procedural captioned corpus, the AudioCaps-format loader and the latent cache.

- `corpus`: `tiny_corpus()`, `build_corpus(root, ...)`, `EVENT_CLASSES`, ground truth (`load_ground_truth`).
- `audiocaps`: `AudioCapsDataset(csv_path, audio_dir, sample_rate=..., clip_samples=...)`.
- `latent_cache`: `build_latent_cache(dataset, encode_fn, ...)`, `file_checksum`, `state_dict_checksum`.
"""

from soundctm.data.audiocaps import AudioCapsDataset, captions_by_clip, load_audio, read_captions_csv
from soundctm.data.captions import caption_vocabulary
from soundctm.data.corpus import (
    EVENT_CLASSES,
    ClipSpec,
    CorpusInfo,
    EventSpec,
    GroundTruth,
    build_corpus,
    load_ground_truth,
    make_clip_spec,
    synthesize_clip,
    tiny_corpus,
)
from soundctm.data.latent_cache import (
    LatentCache,
    build_latent_cache,
    file_checksum,
    find_latent_cache,
    latent_cache_key,
    state_dict_checksum,
)

__all__ = [
    "AudioCapsDataset",
    "captions_by_clip",
    "load_audio",
    "read_captions_csv",
    "caption_vocabulary",
    "EVENT_CLASSES",
    "ClipSpec",
    "CorpusInfo",
    "EventSpec",
    "GroundTruth",
    "build_corpus",
    "load_ground_truth",
    "make_clip_spec",
    "synthesize_clip",
    "tiny_corpus",
    "LatentCache",
    "build_latent_cache",
    "file_checksum",
    "find_latent_cache",
    "latent_cache_key",
    "state_dict_checksum",
]
