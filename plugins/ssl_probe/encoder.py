"""Frozen transformers audio encoders: finding them offline, loading them, encoding long audio.

Nothing here ever downloads. ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` are set before
transformers is imported and every load passes ``local_files_only=True``: a model is read from a
folder, from the local Hugging Face cache (an id such as ``microsoft/wavlm-base-plus`` that
``hf download`` fetched once), or built with random weights from a known configuration
(``random:wavlm-base``: the compute of the real model, for cost measurements and smoke tests).

:func:`describe` reads only ``config.json`` and digests the weight files (no torch, no
transformers): it is what the feature cache key is made of. :func:`load` builds the encoder
(cached per process). :func:`encode` runs it over utterances: each is cut into overlapping
chunks of at most ``chunk_seconds`` (Whisper: its native 30 s window); every frame is taken from
the chunk where it lies farthest from the cut; chunks are batched by length; the hidden states of
every layer are pooled over time (mean, or mean and standard deviation), over the whole utterance
or over windows of ``window_seconds`` (regression).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_bench.errors import ConfigError, PluginError
from ser_bench.interfaces import SAMPLE_RATE, file_fingerprint, stable_hash

#: model_type (config.json) -> family. Whisper-like models take log-mel input; the others the waveform.
WAVEFORM_TYPES = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech",
                  "unispeech-sat", "sew", "sew-d")
MEL_TYPES = ("whisper",)
AUDIO_TYPES = WAVEFORM_TYPES + MEL_TYPES
#: Waveform models whose padded frames are masked exactly (conv layer norm, masked attention; tested).
#: data2vec-audio is not: its positional conv stack normalises padded frames into the valid ones.
PAD_EXACT = ("wav2vec2", "hubert", "wavlm")
#: Config keys that do not change what the encoder computes.
_VOLATILE = ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype", "_attn_implementation",
             "_attn_implementation_autoset", "id2label", "label2id", "_commit_hash")
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")

_TINY_W2V = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
_LARGE_W2V = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                  feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
_WHISPER_TOKENS = dict(vocab_size=100, pad_token_id=1, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                       decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, max_target_positions=16)
#: ``random:NAME``: randomly initialised encoders of published sizes (no download; the compute of the
#: real model, not its accuracy). ``*-tiny`` are a few hundred kB, for tests and the README smoke run.
RANDOM_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "wavlm-tiny": ("wavlm", dict(_TINY_W2V, feat_extract_norm="layer")),
    "hubert-tiny": ("hubert", dict(_TINY_W2V)),
    "wav2vec2-tiny": ("wav2vec2", dict(_TINY_W2V)),
    "data2vec-audio-tiny": ("data2vec-audio", dict(_TINY_W2V, num_conv_pos_embeddings=5, conv_pos_kernel_size=5)),
    "whisper-tiny-random": ("whisper", dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                                            num_mel_bins=80, max_source_positions=100, **_WHISPER_TOKENS)),
    "wavlm-base": ("wavlm", {}),  # microsoft/wavlm-base(-plus): 94.7 M parameters
    "wavlm-large": ("wavlm", dict(_LARGE_W2V)),  # microsoft/wavlm-large: 315 M
    "hubert-base": ("hubert", {}),  # facebook/hubert-base-ls960
    "hubert-large": ("hubert", dict(_LARGE_W2V)),  # facebook/hubert-large-ll60k
    "wav2vec2-base": ("wav2vec2", {}),  # facebook/wav2vec2-base
    "wav2vec2-large": ("wav2vec2", dict(_LARGE_W2V)),  # facebook/wav2vec2-large-lv60, XLS-R 300M
    "data2vec-audio-base": ("data2vec-audio", {}),  # facebook/data2vec-audio-base
    "whisper-base": ("whisper", dict(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048,
                                     num_mel_bins=80, **_WHISPER_TOKENS)),  # openai/whisper-base encoder
    "whisper-small": ("whisper", dict(d_model=768, encoder_layers=12, encoder_attention_heads=12, encoder_ffn_dim=3072,
                                      num_mel_bins=80, **_WHISPER_TOKENS)),  # openai/whisper-small encoder
}


def _offline() -> None:
    """Forbid the Hugging Face libraries any network access in this process (set before import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _transformers():
    _offline()
    try:
        import transformers
    except ImportError:
        raise PluginError("ssl-probe needs the transformers library: pip install 'ser-bench[ssl]'") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def download_hint(model: str) -> str:
    return (f"download it once where there is network (`hf download {model}`, or "
            f"`huggingface-cli download {model} --local-dir DIR`) and pass -o ssl-probe.model={model} (found in the "
            f"Hugging Face cache, $HF_HOME) or -o ssl-probe.model=DIR")


@dataclass(frozen=True)
class ModelInfo:
    """A resolved encoder: where it lies, its config and what identifies its weights."""

    spec: str
    folder: Path | None  # None for random:NAME
    config: dict[str, Any] = field(repr=False)
    preprocessor: dict[str, Any] = field(repr=False, default_factory=dict)
    weights: str = ""  # digest of the weight files (folder) or "" (random: digested after building)

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def is_mel(self) -> bool:
        return self.model_type in MEL_TYPES


_INFOS: dict[str, ModelInfo] = {}


def _hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - transformers pulls huggingface_hub in
        return "~/.cache/huggingface/hub"


def resolve_folder(model: str) -> Path:
    """The local folder of ``model``: the folder itself, or its snapshot in the local HF cache.
    Raises one-line :class:`PluginError` saying what to download when there is none."""
    p = Path(model).expanduser()
    if p.is_dir():
        return p.resolve()
    if p.exists():
        raise ConfigError(f"ssl-probe.model={model}: a file, not a model folder (a folder with config.json and "
                          "the weights, as save_pretrained or `hf download --local-dir` writes)")
    looks_like_id = re.fullmatch(r"[\w.-]+/[\w.-]+", model) is not None
    if looks_like_id:
        _offline()
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(model, local_files_only=True)).resolve()
        except ImportError:
            raise PluginError("ssl-probe needs the transformers library: pip install 'ser-bench[ssl]'") from None
        except Exception:  # LocalEntryNotFoundError, a malformed id...
            pass
    raise PluginError(f"ssl-probe.model={model}: no such folder, nor a copy in the Hugging Face cache "
                      f"({_hub_cache()}); models are never downloaded at run time: {download_hint(model)}")


def describe(model: str) -> ModelInfo:
    """Resolve ``model`` and read what identifies it, without importing torch (cached per process,
    per folder version: a rewritten weight file gets a new digest)."""
    if model.startswith("random:"):
        name = model.split(":", 1)[1]
        if name not in RANDOM_CONFIGS:
            raise ConfigError(f"ssl-probe.model={model}: unknown random configuration; known: "
                              + ", ".join(f"random:{k}" for k in RANDOM_CONFIGS))
        mtype, kw = RANDOM_CONFIGS[name]
        return ModelInfo(spec=model, folder=None, config={"model_type": mtype, **kw})
    folder = resolve_folder(model)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise PluginError(f"ssl-probe.model={model}: {folder} has no config.json, so it is not a transformers model "
                          f"folder; {download_hint(model)}")
    weights = sorted({f for pat in WEIGHT_FILES for f in folder.glob(pat)})
    stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in [cfg_path, *weights]]
    key = stable_hash([model, stamp], n=32)
    if key in _INFOS:
        return _INFOS[key]
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise PluginError(f"ssl-probe.model={model}: cannot read {cfg_path}: {exc}") from None
    mtype = str(config.get("model_type", ""))
    if mtype not in AUDIO_TYPES:
        raise PluginError(
            f"ssl-probe.model={model}: a {mtype or 'untyped'!r} model ({', '.join(config.get('architectures') or [])}), "
            f"not an audio encoder; ssl-probe takes {', '.join(AUDIO_TYPES)} models (self-supervised speech encoders "
            "and Whisper's encoder)")
    if not weights:
        raise PluginError(f"ssl-probe.model={model}: {folder} has config.json but no weights (*.safetensors / "
                          f"*.bin); {download_hint(model)}")
    pre = folder / "preprocessor_config.json"
    preprocessor = json.loads(pre.read_text()) if pre.is_file() else {}
    digest = stable_hash([[f.name, file_fingerprint(f)] for f in weights], n=32)
    info = _INFOS[key] = ModelInfo(spec=model, folder=folder, config=config, preprocessor=preprocessor, weights=digest)
    return info


def config_identity(info: ModelInfo) -> dict[str, Any]:
    """The encoder's config without the keys that do not change its outputs."""
    return {k: v for k, v in sorted(info.config.items()) if k not in _VOLATILE}


def tensor_digest(module) -> str:
    """Digest of a module's parameters and buffers (names, dtypes, shapes, bytes)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return "t:" + h.hexdigest()


# ----------------------------------------------------------------------------- loaded encoders


def build_random(name: str, seed: int = 0):
    """A randomly initialised encoder of configuration ``random:NAME`` (deterministic for a seed)."""
    import torch

    tf = _transformers()
    mtype, kw = RANDOM_CONFIGS[name]
    cfg = tf.AutoConfig.for_model(mtype, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if mtype == "whisper":
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            model = WhisperEncoder(cfg)
        else:
            model = tf.AutoModel.from_config(cfg)
    return model.eval()


def build_full_random(name: str, seed: int = 0):
    """As :func:`build_random` but a whole model (Whisper with its decoder), for save_pretrained."""
    import torch

    tf = _transformers()
    mtype, kw = RANDOM_CONFIGS[name]
    cfg = tf.AutoConfig.for_model(mtype, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return tf.AutoModel.from_config(cfg).eval()


@dataclass
class Encoder:
    """A loaded, frozen encoder and what :func:`encode` needs to know about it."""

    info: ModelInfo
    model: Any = field(repr=False)
    device: Any
    digest: str
    n_layers: int  # hidden states returned: the embedding output + each transformer layer
    dim: int
    stride: int  # samples per output frame
    receptive: int  # samples the first frame needs (waveform models)
    window: int  # Whisper: samples per input window (30 s); waveform models: 0
    normalize: bool
    can_pad: bool  # batches may mix lengths (padding is masked exactly)
    mel: Any = field(default=None, repr=False)


_ENCODERS: dict[tuple[str, str, str], Encoder] = {}


def load(model: str, device: str = "cpu") -> Encoder:
    """The frozen encoder ``model`` on ``device`` (one per process, spec and device)."""
    info = describe(model)
    key = (model, info.weights, device)
    if key in _ENCODERS:
        return _ENCODERS[key]
    import torch

    tf = _transformers()
    if info.folder is None:
        net = build_random(model.split(":", 1)[1])
    else:
        try:
            net = tf.AutoModel.from_pretrained(str(info.folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise PluginError(f"ssl-probe.model={model}: transformers cannot load {info.folder} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); {download_hint(model)}") from None
        if info.is_mel:
            net = net.get_encoder()
    net = net.eval().to(torch.device(device))
    for p in net.parameters():
        p.requires_grad_(False)
    cfg = net.config
    n_layers = int(getattr(cfg, "encoder_layers", 0) or cfg.num_hidden_layers) + 1
    dim = int(getattr(cfg, "d_model", 0) or cfg.hidden_size)
    digest = info.weights or tensor_digest(net)
    if info.is_mel:
        from transformers import WhisperFeatureExtractor

        window = int(cfg.max_source_positions) * 2 * 160
        mel = WhisperFeatureExtractor(feature_size=int(cfg.num_mel_bins), sampling_rate=SAMPLE_RATE, hop_length=160,
                                      chunk_length=window // SAMPLE_RATE, n_fft=400)
        mel.n_samples = window
        mel.nb_max_frames = window // 160
        enc = Encoder(info, net, torch.device(device), digest, n_layers, dim, stride=320, receptive=0, window=window,
                      normalize=False, can_pad=True, mel=mel)
    else:
        kernels, strides = list(cfg.conv_kernel), list(cfg.conv_stride)
        stride, receptive, jump = 1, 1, 1
        for k, s in zip(kernels, strides):
            receptive += (k - 1) * jump
            jump *= s
        stride = jump
        norm = str(getattr(cfg, "feat_extract_norm", "layer"))
        normalize = bool(info.preprocessor.get("do_normalize", norm == "layer"))
        enc = Encoder(info, net, torch.device(device), digest, n_layers, dim, stride=stride, receptive=receptive,
                      window=0, normalize=normalize, can_pad=norm == "layer" and info.model_type in PAD_EXACT)
    _ENCODERS[key] = enc
    return enc


# ----------------------------------------------------------------------------- encoding


@dataclass
class _Piece:
    utt: int
    start: int  # sample offset of the piece in its utterance
    audio: np.ndarray
    own: tuple[float, float]  # frames whose centre lies in [own) are taken from this piece


def pieces(x: np.ndarray, chunk: int, overlap: int, utt: int = 0) -> list[_Piece]:
    """Overlapping pieces of at most ``chunk`` samples, all exactly ``chunk`` long when there are
    several (the last one ends at the end); each frame belongs to the piece where it lies farthest
    from a cut (the boundary is the middle of each overlap)."""
    n = len(x)
    if n <= chunk:
        return [_Piece(utt, 0, x, (-np.inf, np.inf))]
    step = chunk - overlap
    starts = list(range(0, n - chunk, step)) + [n - chunk]
    out = []
    for k, s in enumerate(starts):
        lo = -np.inf if k == 0 else (starts[k - 1] + chunk + s) / 2
        hi = np.inf if k == len(starts) - 1 else (s + chunk + starts[k + 1]) / 2
        out.append(_Piece(utt, s, x[s: s + chunk], (lo, hi)))
    return out


def _batches(ps: list[_Piece], enc: Encoder, batch_samples: int) -> list[list[_Piece]]:
    """Pieces grouped for forward passes: sorted by length (longest first), at most
    ``batch_samples`` of padded audio per pass, mixed lengths only where padding is masked exactly."""
    order = sorted(ps, key=lambda p: (-len(p.audio), p.utt, p.start))
    out: list[list[_Piece]] = []
    for p in order:
        if out and batch_samples > 0:
            cur = out[-1]
            width = enc.window or len(cur[0].audio)
            same = enc.window > 0 or enc.can_pad or len(p.audio) == len(cur[0].audio)
            if same and width * (len(cur) + 1) <= batch_samples:
                cur.append(p)
                continue
        out.append([p])
    return out


def _forward(enc: Encoder, batch: list[_Piece]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(hidden states (layers, frames, dim) float32, frame centres in utterance samples) per piece."""
    import torch

    with torch.inference_mode():
        if enc.window:
            feats = enc.mel([p.audio for p in batch], sampling_rate=SAMPLE_RATE, return_tensors="np",
                            padding="max_length", max_length=enc.window, truncation=True)["input_features"]
            out = enc.model(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(enc.device),
                            output_hidden_states=True)
            valid = [max(1, -(-len(p.audio) // enc.stride)) for p in batch]
            offset = enc.stride / 2
        else:
            width = max(len(p.audio) for p in batch)
            x = np.zeros((len(batch), width), dtype=np.float32)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for i, p in enumerate(batch):
                x[i, : len(p.audio)] = p.audio
                mask[i, : len(p.audio)] = 1
            kw = {}
            if any(len(p.audio) != width for p in batch):
                kw["attention_mask"] = torch.from_numpy(mask).to(enc.device)
            out = enc.model(torch.from_numpy(x).to(enc.device), output_hidden_states=True, **kw)
            valid = [int(enc.model._get_feat_extract_output_lengths(len(p.audio))) for p in batch]
            offset = enc.receptive / 2
        hs = torch.stack(out.hidden_states, dim=1).float().cpu().numpy()  # (batch, layers, frames, dim)
    res = []
    for i, p in enumerate(batch):
        t = min(valid[i], hs.shape[2])
        centres = p.start + np.arange(t) * enc.stride + offset
        res.append((hs[i, :, :t], centres))
    return res


def prepare_signal(enc: Encoder, audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise PluginError(f"ssl-probe needs mono 1-D audio, got shape {x.shape}")
    if enc.normalize:  # as Wav2Vec2FeatureExtractor(do_normalize=True), over the whole utterance
        x = ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
    if not enc.window and len(x) < enc.receptive:  # shorter than one frame: zero-padded to one
        x = np.concatenate([x, np.zeros(enc.receptive - len(x), np.float32)])
    return x


def encode(enc: Encoder, audios: list[np.ndarray], *, chunk_seconds: float, overlap_seconds: float,
           pooling: str = "mean", window_seconds: float | None = None,
           batch_seconds: float = 0.0) -> list[np.ndarray]:
    """Pooled hidden states of every layer for each signal.

    Returns per signal, float32: ``(layers, P*dim)`` (``window_seconds`` None: pooled over the
    utterance) or ``(windows, layers, P*dim + 1)`` (pooled per window of ``window_seconds``; the
    last column is the number of samples the window covers). P = 1 (mean) or 2 (mean, std).
    """
    chunk = enc.window or int(round(chunk_seconds * SAMPLE_RATE))
    overlap = int(round(overlap_seconds * SAMPLE_RATE))
    if overlap >= chunk:
        raise ConfigError(f"ssl-probe: overlap_seconds ({overlap_seconds}) must be shorter than a chunk "
                          f"({chunk / SAMPLE_RATE:g} s)")
    signals = [prepare_signal(enc, a) for a in audios]
    lengths = [len(np.asarray(a)) for a in audios]
    win = int(round(window_seconds * SAMPLE_RATE)) if window_seconds else None
    n_win = [max(1, -(-n // win)) if win else 1 for n in lengths]
    sums = [np.zeros((w, enc.n_layers, enc.dim)) for w in n_win]
    sq = [np.zeros((w, enc.n_layers, enc.dim)) for w in n_win] if pooling == "mean+std" else None
    counts = [np.zeros(w) for w in n_win]
    ps = [p for i, x in enumerate(signals) for p in pieces(x, chunk, overlap, i)]
    for batch in _batches(ps, enc, int(round(batch_seconds * SAMPLE_RATE))):
        for p, (h, centres) in zip(batch, _forward(enc, batch)):
            keep = (centres >= p.own[0]) & (centres < p.own[1])
            if not keep.any():
                continue
            h, centres = h[:, keep], centres[keep]
            w_idx = np.minimum((centres // win).astype(np.int64), n_win[p.utt] - 1) if win else np.zeros(len(centres), np.int64)
            for w in np.unique(w_idx):
                sel = h[:, w_idx == w].astype(np.float64)
                sums[p.utt][w] += sel.sum(1)
                if sq is not None:
                    sq[p.utt][w] += (sel**2).sum(1)
                counts[p.utt][w] += sel.shape[1]
    out = []
    for i in range(len(signals)):
        c = np.maximum(counts[i], 1)[:, None, None]
        mean = sums[i] / c
        parts = [mean]
        if sq is not None:
            parts.append(np.sqrt(np.maximum(sq[i] / c - mean**2, 0.0)))
        pooled = np.concatenate(parts, axis=-1)  # (windows, layers, P*dim)
        if win is None:
            out.append(pooled[0].astype(np.float32))
        else:
            covered = np.full(n_win[i], float(win))
            covered[-1] = lengths[i] - win * (n_win[i] - 1)
            col = np.broadcast_to(covered[:, None, None], (n_win[i], enc.n_layers, 1))
            out.append(np.concatenate([pooled, col], axis=-1).astype(np.float32))
    return out
