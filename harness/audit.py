"""The audit of a run's input files: what is wrong with an utterance's clean audio, in our words.

Before anything is computed, every utterance's clean audio is checked once (clean results are
cached by content key): a missing, unreadable, empty, truncated or silent file is a *problem*
(the run's ``on_bad_audio`` policy fails the run or leaves the utterance out); a downmix or a
resampling is a documented *conversion*. :func:`bad_inputs` joins the audit's findings with the
entries the dataset loaders could not use.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .artefacts import Context, worker_context
from .audio import SAMPLE_RATE, SILENCE_PEAK, audio_info, is_silent
from .errors import AudioError, BenchError
from .executors import Executor
from .interfaces import Utterance
from .progress import run_bar

AUDIT_CHUNK = 64  # utterances per audit job
AUDIT_VERSION = "1"  # bump when what the audit checks changes


def audit_key(ctx: Context, utt: Utterance) -> str:
    return ctx.cache.key(["audit", AUDIT_VERSION, utt.content_key()])


def audit(ctx: Context, utt: Utterance) -> tuple[str, str]:
    """``(problem, conversion)`` of an utterance's clean audio ("" when none).

    A problem makes the utterance bad: missing / unreadable / empty / truncated file,
    zero-length audio, NaN or inf samples (all raised by the loader, naming the file), or
    silent speech. A conversion is documented handling: a stereo file downmixed, another
    sample rate resampled. Clean results are cached by content key; problems are re-checked
    on every run (the user may have fixed the file).
    """
    key = audit_key(ctx, utt)
    hit = ctx.cache.load("audit", key)
    if hit is not None and hit.shape == (2,):
        return str(hit[0]), str(hit[1])
    problem = conversion = ""
    where = str(utt.path or utt.id)
    try:
        if utt.loader is None and utt.path is not None:
            p = Path(utt.path)
            if p.is_file() and p.stat().st_size == 0:
                raise AudioError(f"{p}: the file is empty (0 bytes); copy or export it again")
            problem = wav_truncation(p)
            conversion = describe_conversion(p)
        x = utt.load()  # raises AudioError for missing/corrupt/empty files and NaN/inf samples
        if not problem and is_silent(x):
            problem = (f"{where}: the speech is silent (peak below {SILENCE_PEAK:g}), so no SNR can be set and "
                       "its features mean nothing; remove or replace the recording")
    except BenchError as exc:
        problem = str(exc)
    except Exception as exc:  # a loader's own failure on this file
        problem = f"{where}: {type(exc).__name__}: {exc}"
    if not problem:
        ctx.cache.store("audit", key, np.array([problem, conversion]))
    return problem, conversion


def wav_truncation(path: object) -> str:
    """For a RIFF/WAVE file whose data chunk is shorter than its header declares (an interrupted
    copy or download; decoders silently return the part that is there): a description; else ""."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return ""
            size = os.fstat(fh.fileno()).st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                cid, clen = struct.unpack("<4sI", fh.read(8))
                if cid == b"data":
                    have = size - pos - 8
                    if clen not in (0, 0xFFFFFFFF) and clen > have:  # 0 / -1: streaming writers
                        return (f"{path}: truncated: the header declares {clen} bytes of audio, the file holds "
                                f"{have}; copy or export the file again")
                    return ""
                pos += 8 + clen + (clen & 1)
    except OSError:
        return ""
    return ""


def describe_conversion(path: object) -> str:
    """What loading ``path`` converts (from its header): a downmix, a resampling; "" if nothing."""
    try:
        info = audio_info(path)
    except AudioError:  # unreadable: the load that follows reports it
        return ""
    done = []
    if info.channels > 1:
        done.append(f"{info.channels} channels downmixed to mono (mean)")
    if info.samplerate != SAMPLE_RATE:
        done.append(f"resampled {info.samplerate} Hz -> {SAMPLE_RATE} Hz (soxr, very high quality)")
    return "; ".join(done)


def audit_job(payload: dict) -> dict:
    """Check the clean audio of a chunk of utterances: ``{"n", "notes": [[id, path, problem, conversion]]}``."""
    ctx = worker_context(payload)
    utts = ctx.utterances(payload["dataset"])
    notes = []
    for uid in payload["ids"]:
        utt = utts[uid]
        problem, conversion = audit(ctx, utt)
        if problem or conversion:
            notes.append([uid, str(utt.path) if utt.path is not None else None, problem, conversion])
    return {"n": len(payload["ids"]), "notes": notes}



def audit_all(ctx: Context, ex: Executor, base: dict, progress: bool) -> list[dict[str, Any]]:
    """Audit every utterance's clean audio (cache hits in the driver, the rest on ``ex``).

    Returns notes ``{dataset, utterance_id, path, kind: "skipped" | "converted", detail}``.
    """
    notes: list[dict[str, Any]] = []
    jobs = []
    for ds in ctx.config.datasets:
        missing = []
        for uid, utt in ctx.utterances(ds).items():
            hit = ctx.cache.load("audit", audit_key(ctx, utt))
            if hit is not None and hit.shape == (2,):
                if str(hit[1]):
                    notes.append(dict(dataset=ds, utterance_id=uid, path=str(utt.path) if utt.path is not None else None,
                                      kind="converted", detail=str(hit[1])))
            else:
                missing.append(uid)
        jobs += [dict(base, dataset=ds, ids=missing[i : i + AUDIT_CHUNK]) for i in range(0, len(missing), AUDIT_CHUNK)]
    bar = run_bar(progress, sum(len(j["ids"]) for j in jobs), "audit")
    lost: list[dict] = []
    for round_ in (1, 2):  # round 2: the utterances of chunks whose worker died, one job each
        for job, res in ex.map_unordered(audit_job, jobs, lost=lambda job, msg: {"lost": msg}):
            if "lost" in res:
                if round_ == 1:
                    lost.append(job)
                    continue
                utt = ctx.utterances(job["dataset"])[job["ids"][0]]
                res = {"n": 1, "notes": [[utt.id, str(utt.path) if utt.path is not None else None,
                                          f"{utt.path or utt.id}: reading it killed the worker process ({res['lost']})",
                                          ""]]}
            for uid, path, problem, conversion in res["notes"]:
                if problem:
                    notes.append(dict(dataset=job["dataset"], utterance_id=uid, path=path, kind="skipped",
                                      detail=problem))
                if conversion:
                    notes.append(dict(dataset=job["dataset"], utterance_id=uid, path=path, kind="converted",
                                      detail=conversion))
            bar.update(res["n"])
        jobs = [dict(job, ids=[uid]) for job in lost for uid in job["ids"]]
        if not jobs:
            break
    bar.close()
    return sorted(notes, key=lambda n: (n["dataset"], n["utterance_id"], n["kind"]))



def bad_inputs(ctx: Context, notes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's bad inputs under its policy: ``(failing, skipped)`` notes.

    Both the entries loaders could not use and the audit's findings count; an entry of a
    dataset whose own ``on_bad_entry`` is "skip" is skipped whatever the policy. Utterance ids
    are made unique per dataset (a note's key in the registry).
    """
    skip_all = ctx.config.on_bad_audio == "skip"
    failing, skipped = [], []
    taken: set[tuple[str, str]] = set()

    def place(note: dict[str, Any], skip: bool) -> None:
        key = (note["dataset"], note["utterance_id"])
        if key in taken:
            note = dict(note, utterance_id=f"{note['utterance_id']} ({len(taken)})")
        taken.add((note["dataset"], note["utterance_id"]))
        (skipped if skip or skip_all else failing).append(note)

    for ds in ctx.config.datasets:
        for entry in ctx.bad_entries.get(ds, []):
            place(entry.note(), entry.skip)
    for note in notes:
        if note["kind"] == "skipped":
            place(note, False)
    order = lambda n: (n["dataset"], n["utterance_id"])  # noqa: E731
    return sorted(failing, key=order), sorted(skipped, key=order)

