"""Generic datasets: a folder per label (``folder-dataset``) and a CSV/TSV manifest (``manifest``).

``folder-dataset``: ``ROOT/<label>/**/<file>.(wav|flac|ogg|...)``. The speaker comes from
``speaker_regex`` (searched in the path below the label folder; group ``speaker`` or group 1),
else from the first sub-folder below the label folder (``ROOT/<label>/<speaker>/...``), else
every file gets the speaker ``"unknown"`` (speaker-independent folds are then impossible; give
``speaker_regex``).

``manifest``: a ``.csv`` or ``.tsv`` file with a header row and the columns ``path``, ``label``,
``speaker`` and optionally ``partition`` (train / dev / test; ``valid``, ``validation`` and
``devel`` mean dev). Relative paths are relative to ``root`` if given, else to the manifest's
folder. Any other columns are ignored.

With the ``classes`` option, a label outside it is a bad entry (an error by default); without
it, the class set is whatever labels the data has.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import ClassVar

from ser_bench.errors import ConfigError, PluginError
from ser_bench.hookspecs import hookimpl
from ser_bench.interfaces import Dataset, Utterance

from .corpus_utils import AUDIO_EXTS, BadEntries, CorpusConfig, probe_audio, require_root

PARTITIONS = {"train": "train", "dev": "dev", "devel": "dev", "valid": "dev", "validation": "dev", "test": "test"}
REQUIRED_COLUMNS = ("path", "label", "speaker")


def _speaker_pattern(regex: str | None) -> re.Pattern[str] | None:
    if regex is None:
        return None
    try:
        pat = re.compile(regex)
    except re.error as exc:
        raise ConfigError(f"option folder-dataset.speaker_regex={regex!r} is not a valid regular expression: {exc}") from None
    if pat.groups == 0:
        raise ConfigError(f"option folder-dataset.speaker_regex={regex!r} needs a group capturing the speaker, e.g. '^(\\w+?)_'")
    return pat


class FolderDataset(Dataset):
    """A folder per label; speakers from a regex or from sub-folders."""

    name: ClassVar[str] = "folder-dataset"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "any corpus laid out as ROOT/<label>/[<speaker>/]*.wav"

    class Config(CorpusConfig):
        #: Labels to use (others are bad entries); default: every label folder.
        classes: list[str] | None = None
        #: Regex searched in the path below the label folder; group "speaker" or group 1.
        speaker_regex: str | None = None
        #: File extensions to read (lower case, with the dot).
        extensions: list[str] = list(AUDIO_EXTS)

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        root = require_root(cfg.root, self.name, "ROOT/<label>/[<speaker>/]<file>.wav")
        pat = _speaker_pattern(cfg.speaker_regex)
        label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not label_dirs:
            raise PluginError(
                f"dataset {self.name!r}: {root} has no label folders; expected ROOT/<label>/<file>.wav "
                "(one folder per class)"
            )
        exts = {e.lower() for e in cfg.extensions}
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        for ldir in label_dirs:
            label = ldir.name
            files = sorted(p for p in ldir.rglob("*") if p.is_file() and p.suffix.lower() in exts)
            if not files:
                bad.add(ldir, f"label folder holds no audio files ({', '.join(sorted(exts))})")
                continue
            if cfg.classes is not None and label not in cfg.classes:
                bad.add(ldir, f"label {label!r} is not in the option classes {cfg.classes}")
                continue
            for path in files:
                rel = path.relative_to(ldir)
                uid = f"{label}/{rel.with_suffix('').as_posix()}"
                if pat is not None:
                    m = pat.search(rel.as_posix())
                    if not m:
                        bad.add(path, f"speaker_regex {pat.pattern!r} does not match {rel.as_posix()!r}",
                                uid=uid, path=path)
                        continue
                    speaker = m.groupdict().get("speaker") or m.group(1)
                else:
                    speaker = rel.parts[0] if len(rel.parts) > 1 else "unknown"
                if cfg.check_audio:
                    probe = probe_audio(path)
                    if isinstance(probe, str):
                        bad.add(path, probe, uid=uid, path=path)
                        continue
                out.append(Utterance(id=uid, speaker=speaker, label=label, path=path))
        if cfg.classes is not None:
            missing = sorted(set(cfg.classes) - {ld.name for ld in label_dirs})
            for c in missing:
                bad.add(root / c, f"class {c!r} from the option classes has no folder")
        bad.finish()
        return out


class ManifestDataset(Dataset):
    """Utterances listed in a CSV/TSV manifest: path, label, speaker[, partition]."""

    name: ClassVar[str] = "manifest"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "utterances listed in a CSV/TSV file: path,label,speaker[,partition]"
    location_options: ClassVar[tuple[str, ...]] = ("root", "manifest")

    class Config(CorpusConfig):
        #: The manifest file (.csv or .tsv; other names: the delimiter is sniffed).
        manifest: Path | None = None
        #: Labels to use (others are bad entries); default: every label in the manifest.
        classes: list[str] | None = None

    def __init__(self, **options) -> None:
        super().__init__(**options)
        # Whether official partitions exist depends on the file: peek at its header now so that
        # protocols can ask before loading (cv = "partition").
        self.has_partitions = "partition" in self._header() if self.config.manifest is not None else False

    def _manifest(self) -> Path:
        m = self.config.manifest
        if m is None:
            raise ConfigError(
                f"dataset {self.name!r} needs the option -o {self.name}.manifest=PATH (a .csv/.tsv with columns "
                "path,label,speaker[,partition])"
            )
        m = Path(m).expanduser()
        if not m.is_file():
            raise ConfigError(f"dataset {self.name!r}: manifest {m} does not exist or is not a file")
        return m

    def _dialect(self, path: Path, sample: str) -> type[csv.Dialect] | csv.Dialect:
        if path.suffix.lower() == ".tsv":
            return csv.excel_tab
        if path.suffix.lower() == ".csv":
            return csv.excel
        try:
            return csv.Sniffer().sniff(sample, delimiters=",\t;")
        except csv.Error:
            return csv.excel

    def _rows(self) -> tuple[list[str], list[dict[str, str]]]:
        path = self._manifest()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"manifest {path}: not UTF-8 text ({exc}); save it as UTF-8") from None
        reader = csv.DictReader(text.splitlines(), dialect=self._dialect(path, text[:4096]))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ConfigError(
                f"manifest {path}: missing column(s) {', '.join(missing)} in the header row "
                f"(found: {', '.join(header) or 'nothing'}); it needs path,label,speaker[,partition]"
            )
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
        return header, rows

    def _header(self) -> list[str]:
        return self._rows()[0]

    def load_utterances(self) -> list[Utterance]:
        cfg = self.config
        path = self._manifest()
        base = require_root(cfg.root, self.name, "a folder the manifest's paths are relative to") if cfg.root else path.parent.resolve()
        _, rows = self._rows()
        if not rows:
            raise PluginError(f"dataset {self.name!r}: manifest {path} lists no utterances (only a header)")
        bad = BadEntries(self.name, cfg.on_bad_entry)
        out: list[Utterance] = []
        seen: dict[str, int] = {}
        for lineno, row in enumerate(rows, start=2):  # line 1 is the header
            where = f"{path.name} line {lineno}"
            rel, label, speaker = row.get("path", ""), row.get("label", ""), row.get("speaker", "")
            # the id and file the row would give (recorded with it when the row is skipped)
            uid = Path(rel).with_suffix("").as_posix() if rel else None
            audio = Path(rel).expanduser() if rel else None
            audio = audio if audio is None or audio.is_absolute() else base / audio
            empty = [c for c in REQUIRED_COLUMNS if not row.get(c)]
            if empty:
                bad.add(where, f"empty {', '.join(empty)}", uid=uid, path=audio)
                continue
            if cfg.classes is not None and label not in cfg.classes:
                bad.add(where, f"label {label!r} is not in the option classes {cfg.classes}", uid=uid, path=audio)
                continue
            partition = None
            if self.has_partitions:
                raw = row.get("partition", "").lower()
                if raw not in PARTITIONS:
                    bad.add(where, f"partition {row.get('partition')!r} is not one of train, dev (valid), test",
                            uid=uid, path=audio)
                    continue
                partition = PARTITIONS[raw]
            if rel in seen:
                # the id is the first row's (a good utterance): record this one under its line
                bad.add(where, f"path {rel!r} already listed on line {seen[rel]}", uid=f"{uid} ({where})", path=audio)
                continue
            seen[rel] = lineno
            if not audio.is_file():
                bad.add(where, f"audio file {audio} not found", uid=uid, path=audio)
                continue
            if cfg.check_audio:
                probe = probe_audio(audio)
                if isinstance(probe, str):
                    bad.add(where, f"{audio}: {probe}", uid=uid, path=audio)
                    continue
            out.append(Utterance(id=uid, speaker=speaker, label=label, partition=partition, path=audio))
        bad.finish()
        return out


@hookimpl
def register_datasets(register) -> None:
    register("folder-dataset", FolderDataset)
    register("manifest", ManifestDataset)
