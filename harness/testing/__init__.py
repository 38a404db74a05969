"""Conformance checks and small fakes for plugin authors.

Call the checks from your plugin package's own tests, like scikit-learn's ``check_estimator``::

    from ser_bench.testing import ConformanceError, check_dataset, check_enhancer, check_hooks

    def test_my_hooks():
        assert ("enhancer", "my-gate") in check_hooks(my_package)   # the module your entry point names

    def test_my_enhancer_conforms():
        check_enhancer(MyEnhancer)                       # a class (default options) or an instance

    def test_my_dataset_conforms(tmp_path):
        check_dataset(MyCorpus, options={"root": make_fake_corpus(tmp_path)})

Each check raises :class:`ConformanceError` (an ``AssertionError``, so pytest shows it as a
test failure) naming the plugin, the rule it breaks and what was observed, e.g.::

    enhancer 'shortener' (mypkg.Shortener) breaks rule 'keeps length': returned shape (15999,)
    for an input of shape (16000,) (speech-like signal, 1 s); an enhancer must return exactly as
    many samples as it is given, mono, at 16 kHz (crop or pad STFT/model output to the input length)

:data:`RULES` lists every rule name by check. The modules of this package, one per concern:

* :mod:`.common`: :class:`ConformanceError`, :data:`RULES`, :func:`check_metadata` (the rules
  every plugin follows);
* :mod:`.enhancers`, :mod:`.ser_models`, :mod:`.datasets`, :mod:`.noise_sources`,
  :mod:`.corruptions`: one check per plugin kind;
* :mod:`.hooks`: :func:`check_hooks` (a plugin module) and :func:`check_plugin` (dispatch by kind);
* :mod:`.fakes`: :class:`ToneDataset`, :class:`ToneTraceDataset`, :class:`FakeNoise`,
  :class:`CentroidSER`, tiny deterministic plugins to test against; register them all at once
  with ``make_plugin_manager(extra=[testing_plugin])``;
* :mod:`.signals`: :func:`speech_like`, :func:`tone_bursts`, :func:`add_white_noise`.
"""
from __future__ import annotations

from .common import RULES, ConformanceError, check_metadata
from .corruptions import check_corruption
from .datasets import check_dataset
from .enhancers import check_enhancer
from .fakes import CentroidSER, FakeNoise, ToneDataset, ToneTraceDataset, make_tone_dataset, testing_plugin
from .hooks import check_hooks, check_plugin
from .noise_sources import check_noise_source
from .ser_models import check_ser_model
from .signals import add_white_noise, speech_like, syllable_envelope, tone_bursts

__all__ = [
    "RULES", "CentroidSER", "ConformanceError", "FakeNoise", "ToneDataset", "ToneTraceDataset", "add_white_noise",
    "check_corruption", "check_dataset", "check_enhancer", "check_hooks", "check_metadata", "check_noise_source", "check_plugin",
    "check_ser_model", "make_tone_dataset", "speech_like", "syllable_envelope", "testing_plugin", "tone_bursts",
]
