"""Registers the loaders of the corpora SER research uses most, each lazily (its module is
imported only when the dataset is used): IEMOCAP, MSP-Podcast, CREMA-D, ESD, TESS, SAVEE and
ShEMO. Every one of them, like every other corpus loader, also takes EmoBox's published folds
(option ``emobox``; :mod:`ser_bench.emobox`).
"""
from __future__ import annotations

from ser_bench.hookspecs import hookimpl

#: name -> (lazy target, one-line description)
CORPORA: dict[str, tuple[str, str]] = {
    "iemocap": ("ser_bench_plugins.iemocap:Iemocap",
                "IEMOCAP release layout; neu/hap(+exc)/ang/sad, 5 session folds; V/A/D regression option"),
    "msp-podcast": ("ser_bench_plugins.msp_podcast:MspPodcast",
                    "MSP-Podcast (Labels/labels_consensus.csv, Audios/); 8 classes, official partitions"),
    "crema-d": ("ser_bench_plugins.crema_d:CremaD", "CREMA-D AudioWAV/; 6 classes, 91 actors in 5 speaker folds"),
    "esd": ("ser_bench_plugins.esd:Esd", "ESD (Emotional Speech Dataset); English speakers by default, 5 classes"),
    "tess": ("ser_bench_plugins.tess:Tess", "TESS (Toronto); 2 speakers, 7 classes, 24,414 Hz"),
    "savee": ("ser_bench_plugins.savee:Savee", "SAVEE (Surrey); 4 speakers, 7 classes"),
    "shemo": ("ser_bench_plugins.shemo:Shemo", "ShEMO (Persian); 87 speakers in 5 speaker folds, 6 classes"),
}


@hookimpl
def register_datasets(register) -> None:
    for name, (target, description) in CORPORA.items():
        register(name, target, description=description)
