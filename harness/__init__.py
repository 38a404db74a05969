"""ser-bench: does speech enhancement help or hurt speech emotion recognition in noise?"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import AudioError, BenchError, ConfigError, PluginError, UnknownPluginError  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .interfaces import (  # noqa: E402
    SAMPLE_RATE,
    Corruption,
    Dataset,
    Enhancer,
    FeatureSet,
    NoiseClip,
    NoiseSource,
    PluginConfig,
    SERModel,
    TimeSeries,
    Utterance,
)

__all__ = [
    "SAMPLE_RATE", "AudioError", "BenchError", "ConfigError", "Corruption", "Dataset", "Enhancer", "FeatureSet",
    "NoiseClip", "NoiseSource", "PluginConfig", "PluginError", "SERModel", "TimeSeries",
    "UnknownPluginError", "Utterance", "__version__", "hookimpl",
]
