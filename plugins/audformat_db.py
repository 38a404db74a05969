"""``audformat``: any database in audformat, the format of audEERING's audb / nkululeko tools.

An audformat database is a folder with a header ``db.yaml`` and one file per table
(``db.<table>.csv`` / ``.parquet`` / ``.pkl``), the media under the same folder. Tables are
indexed by ``file`` (filewise) or by ``file, start, end`` (segmented; each segment becomes one
utterance). The plugin maps:

* labels: the column ``label_column`` (a column id, or the id of the scheme a column uses) of
  the chosen table(s). Rows without a label are left out. Categorical labels only; merge or
  rename classes with ``label_map`` and keep a subset with ``classes``.
* speakers: the column ``speaker_column`` (id or scheme id), in the same table or in any other
  file-indexed table (e.g. a ``files`` table), joined by file.
* partitions: a table's split (``split_id``) gives its rows' partition, from the split's type
  (train / dev / test) or, failing that, its id (``devel``, ``valid``... mean dev); override
  with ``split_map``. When every utterance has one and train and test are non-empty, the
  dataset has official partitions (``--cv partition``, or ``auto``).

With ``table`` unset, every table with the label column is read and rows for the same file are
merged (audb's emodb, for instance, has an ``emotion`` table and per-split copies of it).
Example::

    bench run mismatched --dataset audformat --data-root audformat=~/audb/emodb/1.4.1 \\
        -o audformat.label_column=emotion -o 'audformat.classes=["anger","happiness","neutral","sadness"]'
"""
from __future__ import annotations

import fnmatch
import logging
import math
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ser_bench.audio import check_signal, resample
from ser_bench.errors import AudioError, ConfigError
from ser_bench.hookspecs import hookimpl
from ser_bench.interfaces import Dataset, Utterance, file_fingerprint

from .corpus_utils import BadEntries, CorpusConfig, check_classes, probe_audio, require_root

log = logging.getLogger("ser_bench.datasets")

LAYOUT = "ROOT/db.yaml + ROOT/db.<table>.(csv|parquet|pkl) + media files under ROOT (audformat / audb)"
#: Split ids understood without ``split_map`` (split types train/dev/test are used first).
SPLIT_IDS = {"train": "train", "dev": "dev", "devel": "dev", "valid": "dev", "validation": "dev", "test": "test"}


class AudformatDataset(Dataset):
    """Labels, speakers and splits from an audformat database (audb, nkululeko)."""

    name: ClassVar[str] = "audformat"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "any audformat database (db.yaml + tables; audb/nkululeko): pick label and speaker columns"

    class Config(CorpusConfig):
        table: str | list[str] | None = Field(
            None, description="table id(s) holding the labels; comma-separated or fnmatch patterns "
            "('emotion*'); default: every table with the label column")
        label_column: str = Field("emotion", description="column (or scheme) id with the class labels")
        speaker_column: str | None = Field(
            "speaker", description="column (or scheme) id with speaker ids, in the label table or any "
            "file-indexed table; None: one speaker 'unknown' (then only official partitions work)")
        label_map: dict[str, str] = Field(default_factory=dict, description="rename / merge labels, e.g. {'boredom': 'neutral'}")
        classes: list[str] | None = Field(None, description="keep only these labels (after label_map)")
        use_splits: bool = Field(True, description="take partitions from the tables' splits")
        split_map: dict[str, str] = Field(
            default_factory=dict, description="split id or type -> train/dev/test (or 'none' to ignore it)")
        db_name: str = Field("db", description="header base name: ROOT/<db_name>.yaml")

    # ------------------------------------------------------------------ loading

    def _open(self, root: Path) -> Any:
        import audformat

        header = root / f"{self.config.db_name}.yaml"
        if not header.is_file():
            raise ConfigError(
                f"dataset 'audformat': no database header {header}; point --data-root audformat=PATH at the folder "
                f"holding {header.name} (expected layout: {LAYOUT})"
            )
        try:
            with _quiet():
                return audformat.Database.load(str(root), name=self.config.db_name, load_data=False)
        except Exception as exc:
            raise ConfigError(f"dataset 'audformat': cannot read the database at {root}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _column(table: Any, wanted: str) -> str | None:
        """The column of ``table`` with id ``wanted``, else the first one using scheme ``wanted``."""
        if wanted in table.columns:
            return wanted
        return next((cid for cid, col in table.columns.items() if col.scheme_id == wanted), None)

    def _label_tables(self, db: Any) -> list[str]:
        want = self.config.table
        tables = list(db.tables)
        if want is None:
            chosen = [t for t in tables if self._column(db[t], self.config.label_column)]
            if not chosen:
                raise ConfigError(
                    f"dataset 'audformat': no table has a column or scheme {self.config.label_column!r}; set "
                    f"-o audformat.label_column=NAME to one of: {_columns_listing(db)}"
                )
            return chosen
        patterns = [p.strip() for p in (want.split(",") if isinstance(want, str) else want) if p.strip()]
        chosen = []
        for p in patterns:
            hits = [t for t in tables if fnmatch.fnmatchcase(t, p)]
            if not hits:
                raise ConfigError(f"dataset 'audformat': no table matches {p!r} (option audformat.table); tables: {', '.join(tables) or 'none'}")
            chosen += [t for t in hits if t not in chosen]
        for t in chosen:
            if not self._column(db[t], self.config.label_column):
                raise ConfigError(
                    f"dataset 'audformat': table {t!r} has no column or scheme {self.config.label_column!r}; its "
                    f"columns: {', '.join(db[t].columns) or 'none'}. Set -o audformat.label_column=NAME."
                )
        return chosen

    def _partition(self, db: Any, table: Any) -> str | None:
        if not self.config.use_splits or table.split_id is None:
            return None
        split = db.splits[table.split_id]
        for key in (table.split_id, split.type):
            if key in self.config.split_map:
                value = self.config.split_map[key]
                if value == "none":
                    return None
                if value not in ("train", "dev", "test"):
                    raise ConfigError(f"dataset 'audformat': split_map[{key!r}] = {value!r}; use train, dev, test or none")
                return value
        if split.type in ("train", "dev", "test"):
            return split.type
        return SPLIT_IDS.get(table.split_id.lower())

    def _speakers(self, db: Any, table_id: str, df: Any) -> Any:
        """Speaker per row of ``df`` (a pandas Series), or None if ``speaker_column`` is None."""
        want = self.config.speaker_column
        if want is None:
            return None
        col = self._column(db[table_id], want)
        if col is not None:
            return df[col]
        files = df.index.get_level_values("file")
        for other in db.tables:
            t = db[other]
            col = self._column(t, want)
            if other == table_id or col is None:
                continue
            with _quiet():
                src = t.get()[col]
            by_file = src.groupby(level="file").first() if t.is_segmented else src
            return by_file.reindex(files).set_axis(df.index)
        raise ConfigError(
            f"dataset 'audformat': no column or scheme {want!r} with speaker ids in table {table_id!r} or in any other "
            f"file-indexed table; set -o audformat.speaker_column=NAME to one of: {_columns_listing(db)} (or null for no speakers)"
        )

    def load_utterances(self) -> list[Utterance]:
        import pandas as pd

        root = require_root(self.config.root, self.name, LAYOUT)
        db = self._open(root)
        bad = BadEntries(self.name, self.config.on_bad_entry)
        rows: dict[tuple[str, float, float], dict[str, Any]] = {}
        for tid in self._label_tables(db):
            table = db[tid]
            with _quiet():
                df = table.get()
            if not table.is_segmented:
                df = df.set_axis(pd.MultiIndex.from_arrays(
                    [df.index, [pd.NaT] * len(df), [pd.NaT] * len(df)], names=["file", "start", "end"]))
            labels = df[self._column(table, self.config.label_column)]
            _require_categorical(labels, tid)
            speakers = self._speakers(db, tid, df)
            part = self._partition(db, table)
            for i, ((file, start, end), value) in enumerate(labels.items()):
                if _missing(value):
                    continue
                spk = "unknown" if speakers is None else speakers.iloc[i]
                if _missing(spk):
                    bad.add(file, f"no speaker in column {self.config.speaker_column!r}")
                    continue
                key = (str(file), _seconds(start, 0.0), _seconds(end, math.inf))
                row = {"label": _label_str(value), "speaker": str(spk), "partition": part, "table": tid}
                if key in rows:
                    rows[key] = _merge(rows[key], row, key)
                else:
                    rows[key] = row
        bad.finish()
        if not rows:
            raise ConfigError(f"dataset 'audformat': the chosen table(s) hold no labelled rows in column {self.config.label_column!r}")

        label_map = self.config.label_map
        for r in rows.values():
            r["label"] = label_map.get(r["label"], r["label"])
        keep = set(check_classes(self.config.classes, sorted({r["label"] for r in rows.values()}), self.name))

        bad = BadEntries(self.name, self.config.on_bad_entry)
        utts = []
        for (file, start, end), r in sorted(rows.items()):
            if r["label"] not in keep:
                continue
            path = Path(file) if Path(file).is_absolute() else root / file
            if not path.is_file():
                bad.add(file, "file not found (media not downloaded? load with audb.load(..., only_metadata=False))")
                continue
            if self.config.check_audio and isinstance(probe := probe_audio(path), str):
                bad.add(file, probe)
                continue
            segment = not (start == 0.0 and math.isinf(end))
            uid = f"{file}@{start:.3f}-{'end' if math.isinf(end) else f'{end:.3f}'}" if segment else file
            utts.append(Utterance(
                id=uid, speaker=r["speaker"], label=r["label"], partition=r["partition"], path=path,
                loader=(lambda p=path, s=start, e=end: _load_segment(p, s, e)) if segment else None,
                fingerprint=_segment_fingerprint(path, start, end) if segment else None,
            ))
        bad.finish("Check the media under the database root")
        if not utts:
            raise ConfigError(f"dataset 'audformat': no utterances left after label_map/classes ({sorted(keep)})")
        parts = {u.partition for u in utts}
        # Instance-level flag: only this database knows whether it has official partitions.
        self.has_partitions = None not in parts and {"train", "test"} <= parts
        if parts != {None} and not self.has_partitions:
            log.info("dataset 'audformat': partitions %s are incomplete; folds will be by speaker", sorted(map(str, parts)))
        return utts


# --------------------------------------------------------------------------- helpers


@contextmanager
def _quiet():
    """Silence audformat 1.4's pandas deprecation warnings (set_index(inplace=True)): not the user's to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The inplace keyword", category=Warning)
        yield


def _columns_listing(db: Any) -> str:
    return "; ".join(f"{t}: {', '.join(db[t].columns) or '-'}" for t in db.tables) or "no tables"


def _missing(v: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _seconds(t: Any, if_missing: float) -> float:
    """A pandas Timedelta as float seconds; ``if_missing`` for NaT (start: 0, end: inf = to the end)."""
    import pandas as pd

    return if_missing if pd.isna(t) else float(pd.Timedelta(t).total_seconds())


def _require_categorical(labels: Any, table: str) -> None:
    import pandas as pd

    vals = labels.dropna()
    if pd.api.types.is_float_dtype(vals) and not np.all(np.mod(vals.to_numpy(dtype=float), 1) == 0):
        raise ConfigError(
            f"dataset 'audformat': column {labels.name!r} of table {table!r} holds continuous values; this plugin "
            "reads categorical labels. Choose a categorical label_column (or bin the values into a new column)."
        )


def _label_str(v: Any) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _merge(old: dict[str, Any], new: dict[str, Any], key: tuple[str, float, float]) -> dict[str, Any]:
    if old["label"] != new["label"]:
        raise ConfigError(
            f"dataset 'audformat': {key[0]} is labelled {old['label']!r} in table {old['table']!r} but {new['label']!r} "
            f"in table {new['table']!r}; choose one table with the option audformat.table=NAME"
        )
    if old["partition"] and new["partition"] and old["partition"] != new["partition"]:
        raise ConfigError(
            f"dataset 'audformat': {key[0]} is in split {old['partition']!r} (table {old['table']!r}) and "
            f"{new['partition']!r} (table {new['table']!r}); choose tables with the option audformat.table=..."
        )
    return {**old, "partition": old["partition"] or new["partition"]}


def _segment_fingerprint(path: Path, start: float, end: float) -> str:
    return f"{file_fingerprint(path)}@{start:.6f}-{end:.6f}"


def _load_segment(path: Path, start: float, end: float) -> np.ndarray:
    """Samples ``start``..``end`` seconds (inf: to the end) of ``path``, mono float32 at 16 kHz."""
    import soundfile as sf

    try:
        sr = sf.info(str(path)).samplerate
        stop = None if math.isinf(end) else int(round(end * sr))
        data, _ = sf.read(str(path), start=int(round(start * sr)), stop=stop, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc}); the file is corrupt or not audio") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: segment {start:.3f}-{end:.3f} s holds no samples; check the table's start/end")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(check_signal(x, source=f"{path}@{start:.3f}-{end:.3f}"), sr)


@hookimpl
def register_datasets(register) -> None:  # noqa: ANN001
    register("audformat", AudformatDataset)
