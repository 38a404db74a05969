"""``folder``: a noise source reading every audio file under a folder (recursively)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from harness import NoiseClip, NoiseSource, PluginConfig, hookimpl
from harness.audio import SILENCE_PEAK, load_audio
from harness.errors import ConfigError
from harness.interfaces import split_part

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")


def trim_silence(x: np.ndarray) -> np.ndarray:
    """Drop leading/trailing digital silence (ESC-50-style clips are padded with zeros)."""
    loud = np.flatnonzero(np.abs(x) > SILENCE_PEAK)
    return x[loud[0] : loud[-1] + 1] if loud.size else x


class FolderNoise(NoiseSource):
    name = "folder"
    description = "Noise clips from a folder tree (wav/flac/ogg), split train/test by a stable hash of the path."

    class Config(PluginConfig):
        root: Path | None = Field(None, description="folder of noise clips (searched recursively)")
        test_fraction: float = Field(0.25, gt=0, lt=1, description="share of clips in the test part (stable hash)")
        extensions: tuple[str, ...] = Field(AUDIO_EXTS, description="file extensions to read")

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
                fingerprint=f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}",
                path=p,
            )
            for p in files
        ]

    def part_of(self, clip: NoiseClip):
        return split_part(clip.id, self.config.test_fraction, salt="folder")


@hookimpl
def register_noise_sources(register):
    register("folder", FolderNoise)
