"""``folder``: a noise source reading every audio file under a folder (recursively).

The clips are split into a *train* part (for training enhancers) and a *test* part by a stable
hash of each clip's path below the root: deterministic, disjoint, and independent of which
other files are there. ``test_fraction`` (default 0.25) sets the share of the test part; 1 puts
every clip in it (a folder no enhancer may train on), 0 none.

What a benchmark run mixes into speech (``clips("test")``, used by the SER protocols and by
enhancer evaluation) is the part the option ``split`` names: ``test`` (default: noise no
enhancer was trained on), ``train`` (the enhancers' own training noise: a seen-noise
condition) or ``all`` (every clip, e.g. a folder that no enhancer has seen). Enhancer
training always draws from the train part. The clips a run mixed are recorded with the run
(``bench runs show``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ser_bench import NoiseClip, NoiseSource, PluginConfig, hookimpl
from ser_bench.audio import SILENCE_PEAK, load_audio
from ser_bench.errors import ConfigError, PluginError
from ser_bench.interfaces import file_fingerprint, split_part

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")


def trim_silence(x: np.ndarray) -> np.ndarray:
    """Drop leading/trailing digital silence (ESC-50-style clips are padded with zeros)."""
    loud = np.flatnonzero(np.abs(x) > SILENCE_PEAK)
    return x[loud[0] : loud[-1] + 1] if loud.size else x


class FolderNoise(NoiseSource):
    name = "folder"
    description = ("Noise clips from a folder tree (wav/flac/ogg), split train/test by a stable hash of the path; "
                   "split=test|train|all picks the clips mixed into speech.")

    class Config(PluginConfig):
        root: Path | None = Field(None, description="folder of noise clips (searched recursively)")
        test_fraction: float = Field(0.25, ge=0, le=1, description="share of clips in the test part (stable hash of "
                                                                    "the path; 1: all of them, 0: none)")
        split: Literal["test", "train", "all"] = Field(
            "test", description="clips mixed into speech by runs and enhancer evaluation: the test part, "
                                "the train part, or all clips")
        extensions: tuple[str, ...] = Field(AUDIO_EXTS, description="file extensions to read")

    def identity(self) -> dict[str, Any]:
        """As before ``split`` existed when it has its default, so that caches and stored cells of
        the default options stay valid; any other split changes every key that depends on it."""
        ident = super().identity()
        if self.config.split == "test":
            ident["config"].pop("split", None)
        return ident

    def load_clips(self) -> list[NoiseClip]:
        root = self.config.root
        if root is None:
            raise ConfigError("noise source 'folder' needs a root: --option folder.root=PATH")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ConfigError(f"noise folder {root} does not exist; set --option folder.root=PATH")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in self.config.extensions)
        if not files:
            raise ConfigError(f"noise folder {root} holds no audio files ({', '.join(self.config.extensions)})")
        return [
            NoiseClip(
                id=str(p.relative_to(root)),
                loader=lambda p=p: trim_silence(load_audio(p)),
                fingerprint=file_fingerprint(p),
                path=p,
            )
            for p in files
        ]

    def part_of(self, clip: NoiseClip):
        if self.config.test_fraction >= 1:  # the hash can reach 1.0 exactly: "all" must mean all
            return "test"
        return split_part(clip.id, self.config.test_fraction, salt="folder")

    def clips(self, part: Literal["train", "test", "all"] = "test") -> list[NoiseClip]:
        """The clips of ``part``; ``"test"`` (what runs mix into speech) means the option ``split``."""
        chosen = self.config.split if part == "test" else part
        try:
            return super().clips(chosen)
        except PluginError:
            n = len(super().clips("all"))
            raise PluginError(
                f"noise source 'folder': no clip of its {n} falls in the {chosen} part (test_fraction="
                f"{self.config.test_fraction:g}); change -o folder.test_fraction or -o folder.split"
            ) from None


@hookimpl
def register_noise_sources(register):
    register("folder", FolderNoise)
