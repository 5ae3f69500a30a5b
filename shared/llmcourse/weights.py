"""GPT-2 weights in the Hugging Face layout, mapped into GPTModel, and an optional download (chapter 4).

GPT-2's published checkpoints (and `transformers`' `GPT2LMHeadModel`) name their tensors
`wte`, `wpe`, `h.N.ln_1`, `h.N.attn.c_attn`, ... and store every linear layer as a "Conv1D"
whose weight is (in, out), the transpose of `nn.Linear`'s (out, in). The query, key and value
projections are fused into one `c_attn` of width 3 * d_model. This module renames, splits and
transposes them into `GPTModel`'s parameters, and checks every name and shape on the way.
"""

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor

from llmcourse.download import fetch, file_sha256
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import CACHE_DIR

# The causal-mask buffers that older GPT-2 checkpoints store next to the parameters.
_BUFFER_NAME = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")


def gpt2_tensor_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of a GPT-2 checkpoint for this configuration, by its GPT-2 name (no prefix)."""
    d, vocab = cfg.d_model, cfg.vocab_size
    shapes = {"wte.weight": (vocab, d), "wpe.weight": (cfg.context_length, d)}
    for i in range(cfg.n_layers):
        shapes.update({
            f"h.{i}.ln_1.weight": (d,), f"h.{i}.ln_1.bias": (d,),
            f"h.{i}.attn.c_attn.weight": (d, 3 * d), f"h.{i}.attn.c_attn.bias": (3 * d,),
            f"h.{i}.attn.c_proj.weight": (d, d), f"h.{i}.attn.c_proj.bias": (d,),
            f"h.{i}.ln_2.weight": (d,), f"h.{i}.ln_2.bias": (d,),
            f"h.{i}.mlp.c_fc.weight": (d, 4 * d), f"h.{i}.mlp.c_fc.bias": (4 * d,),
            f"h.{i}.mlp.c_proj.weight": (4 * d, d), f"h.{i}.mlp.c_proj.bias": (d,),
        })
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
    return shapes


def _strip_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the `transformer.` prefix that GPT2LMHeadModel puts on everything except `lm_head`."""
    return {name.removeprefix("transformer."): tensor for name, tensor in state_dict.items()}


def check_gpt2_state_dict(shapes: Mapping[str, tuple[int, ...]], cfg: GPTConfig) -> None:
    """Raise a ValueError naming every missing, unexpected or wrongly shaped tensor.

    `shapes` maps GPT-2 names (with or without the `transformer.` prefix) to tensor shapes.
    `lm_head.weight` is optional (GPT-2 ties it to `wte`); mask buffers are ignored.
    """
    shapes = {name.removeprefix("transformer."): tuple(shape) for name, shape in shapes.items()}
    expected = gpt2_tensor_shapes(cfg)
    optional = {"lm_head.weight": (cfg.vocab_size, cfg.d_model)}
    missing = [name for name in expected if name not in shapes]
    unexpected = [name for name in shapes
                  if name not in expected and name not in optional and not _BUFFER_NAME.fullmatch(name)]
    wrong = [f"{name} {shapes[name]} (expected {want})"
             for name, want in {**expected, **optional}.items()
             if name in shapes and shapes[name] != want]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if wrong:
        problems.append(f"wrongly shaped tensors: {', '.join(wrong)}")
    if problems:
        raise ValueError(f"not a GPT-2 state dict for d_model={cfg.d_model}, n_layers={cfg.n_layers}, "
                         f"vocab_size={cfg.vocab_size}, context_length={cfg.context_length}; "
                         + "; ".join(problems))


# GPT-2's value of every GPTConfig option that changes what the weights compute (d_ff is checked apart).
GPT2_OPTIONS = dict(pre_norm=True, qkv_bias=True, positions="learned", norm="layer", ff="gelu", bias=True,
                    qk_norm=False, norm_eps=1e-5)


def check_gpt2_options(cfg: GPTConfig) -> None:
    """Refuse a config with an option GPT-2 does not have: its weights would load, but compute something else."""
    wrong = [f"{name}={getattr(cfg, name)!r} (GPT-2: {value!r})" for name, value in GPT2_OPTIONS.items()
             if getattr(cfg, name) != value]
    if cfg.ff_width != 4 * cfg.d_model:
        wrong.append(f"d_ff={cfg.d_ff} (GPT-2: 0, which means 4 * d_model = {4 * cfg.d_model})")
    if wrong:
        raise ValueError("GPT-2 weights need GPT-2's options; this config has " + ", ".join(wrong))


def gpt2_state_dict_to_ours(state_dict: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """Rename, split and transpose a GPT-2 state dict into GPTModel's parameter names.

    The fused `c_attn` (d, 3d) becomes `W_query`, `W_key`, `W_value` (d, d) each, and every
    Conv1D weight is transposed to nn.Linear's (out, in). `out_head.weight` is `lm_head.weight`
    when the checkpoint has one, else `wte.weight` (GPT-2 ties them).
    """
    check_gpt2_options(cfg)
    gpt2 = _strip_prefix(state_dict)
    check_gpt2_state_dict({name: tensor.shape for name, tensor in gpt2.items()}, cfg)
    head = gpt2.get("lm_head.weight", gpt2["wte.weight"])
    if cfg.tie_weights and head is not gpt2["wte.weight"] and not torch.equal(head, gpt2["wte.weight"]):
        raise ValueError("lm_head.weight differs from wte.weight, but cfg.tie_weights=True; "
                         "use a config with tie_weights=False for an untied checkpoint")

    ours = {"tok_emb.weight": gpt2["wte.weight"], "pos_emb.weight": gpt2["wpe.weight"]}
    for i in range(cfg.n_layers):
        h, b = f"h.{i}.", f"blocks.{i}."
        q, k, v = gpt2[h + "attn.c_attn.weight"].chunk(3, dim=1)
        q_bias, k_bias, v_bias = gpt2[h + "attn.c_attn.bias"].chunk(3)
        ours.update({
            b + "norm1.weight": gpt2[h + "ln_1.weight"], b + "norm1.bias": gpt2[h + "ln_1.bias"],
            b + "attn.W_query.weight": q.t(), b + "attn.W_query.bias": q_bias,
            b + "attn.W_key.weight": k.t(), b + "attn.W_key.bias": k_bias,
            b + "attn.W_value.weight": v.t(), b + "attn.W_value.bias": v_bias,
            b + "attn.out_proj.weight": gpt2[h + "attn.c_proj.weight"].t(),
            b + "attn.out_proj.bias": gpt2[h + "attn.c_proj.bias"],
            b + "norm2.weight": gpt2[h + "ln_2.weight"], b + "norm2.bias": gpt2[h + "ln_2.bias"],
            b + "ff.fc_in.weight": gpt2[h + "mlp.c_fc.weight"].t(), b + "ff.fc_in.bias": gpt2[h + "mlp.c_fc.bias"],
            b + "ff.fc_out.weight": gpt2[h + "mlp.c_proj.weight"].t(),
            b + "ff.fc_out.bias": gpt2[h + "mlp.c_proj.bias"],
        })
    ours.update({"final_norm.weight": gpt2["ln_f.weight"], "final_norm.bias": gpt2["ln_f.bias"],
                 "out_head.weight": head})
    return ours


def load_gpt2_weights(model: GPTModel, state_dict: Mapping[str, Tensor]) -> GPTModel:
    """Copy a GPT-2-layout state dict into `model` (in place) and return it."""
    model.load_state_dict(gpt2_state_dict_to_ours(state_dict, model.cfg), strict=True)
    return model


def config_from_gpt2_state_dict(state_dict: Mapping[str, Tensor], n_heads: int | None = None,
                                **overrides) -> GPTConfig:
    """The GPTConfig a GPT-2 state dict implies; `overrides` set other fields (e.g. dropout=0.0).

    Widths, depth, vocabulary and context length come from the tensor shapes. The number of
    heads is not visible in them: by default it is d_model // 64, as in every published GPT-2.
    """
    gpt2 = _strip_prefix(state_dict)
    if "wte.weight" not in gpt2 or "wpe.weight" not in gpt2:
        raise ValueError("not a GPT-2 state dict: it needs wte.weight and wpe.weight")
    vocab_size, d_model = gpt2["wte.weight"].shape
    layers = {int(m.group(1)) for name in gpt2 if (m := re.match(r"h\.(\d+)\.", name))}
    if n_heads is None:
        if d_model % 64:
            raise ValueError(f"d_model={d_model} is not a multiple of 64; pass n_heads explicitly")
        n_heads = d_model // 64
    tied = "lm_head.weight" not in gpt2 or torch.equal(gpt2["lm_head.weight"], gpt2["wte.weight"])
    settings = dict(vocab_size=vocab_size, context_length=gpt2["wpe.weight"].shape[0], d_model=d_model,
                    n_heads=n_heads, n_layers=len(layers), qkv_bias=True, tie_weights=tied, pre_norm=True)
    return GPTConfig(**{**settings, **overrides})


def config_from_hf_config(hf_config: "Mapping | transformers.GPT2Config", **overrides) -> GPTConfig:
    """The GPTConfig for a Hugging Face GPT2Config (or its config.json as a dict).

    Raises a ValueError for settings GPTModel does not implement (another activation, inner
    width or LayerNorm epsilon). `overrides` set other fields (e.g. dropout=0.0).
    """
    def get(key: str, default=None):
        return hf_config.get(key, default) if isinstance(hf_config, Mapping) else getattr(hf_config, key, default)

    d_model = get("n_embd", 768)
    unsupported = []
    if get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        unsupported.append(f"activation_function={get('activation_function')!r} (needs the tanh GELU)")
    if get("n_inner") not in (None, 4 * d_model):
        unsupported.append(f"n_inner={get('n_inner')} (needs 4 * n_embd = {4 * d_model})")
    if get("layer_norm_epsilon", 1e-5) != 1e-5:
        unsupported.append(f"layer_norm_epsilon={get('layer_norm_epsilon')} (needs 1e-5)")
    if get("scale_attn_by_inverse_layer_idx", False) or not get("scale_attn_weights", True):
        unsupported.append("attention scaled other than by 1/sqrt(head_dim)")
    if get("add_cross_attention", False):
        unsupported.append("add_cross_attention=True")
    if unsupported:
        raise ValueError("GPTModel cannot represent this GPT-2 config: " + "; ".join(unsupported))
    settings = dict(vocab_size=get("vocab_size", 50257), context_length=get("n_positions", 1024),
                    d_model=d_model, n_heads=get("n_head", 12), n_layers=get("n_layer", 12),
                    dropout=get("resid_pdrop", 0.1), qkv_bias=True,
                    tie_weights=get("tie_word_embeddings", True), pre_norm=True)
    return GPTConfig(**{**settings, **overrides})


def gpt_from_transformers(hf_model: "transformers.GPT2LMHeadModel") -> GPTModel:
    """A GPTModel with the same configuration and weights as a `transformers` GPT2LMHeadModel."""
    model = GPTModel(config_from_hf_config(hf_model.config))
    load_gpt2_weights(model, hf_model.state_dict())
    return model.train(hf_model.training)


def load_gpt2_safetensors(path: str | Path, **overrides) -> GPTModel:
    """A GPTModel from a GPT-2 `model.safetensors` file (the published layout), in eval mode.

    The configuration comes from a `config.json` beside the file if there is one, else from
    the tensor shapes; `overrides` set other fields (e.g. dropout=0.0).
    """
    path = Path(path)
    try:
        state_dict = load_file(path)
    except SafetensorError as error:
        raise ValueError(f"{path} is not a readable safetensors file (corrupt or truncated): {error}") from None
    config_path = path.with_name("config.json")
    if config_path.exists():
        try:
            hf_config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{config_path} is not valid JSON (corrupt or truncated): {error}") from None
        cfg = config_from_hf_config(hf_config, **overrides)
    else:
        cfg = config_from_gpt2_state_dict(state_dict, **overrides)
    return load_gpt2_weights(GPTModel(cfg), state_dict).eval()


# ---------------------------------------------------------------------------------------------
# Downloading the published weights (optional: the course itself never needs the network)

HF_BASE_URL = "https://huggingface.co/openai-community"


@dataclass(frozen=True)
class PublishedCheckpoint:
    """Where one GPT-2 size lives on the Hugging Face hub, and what its weights file must be."""

    repo: str
    config: GPTConfig = field(compare=False)
    sha256: str | None = None  # the LFS sha256 of model.safetensors, when published and checked
    n_bytes: int | None = None


GPT2_CHECKPOINTS = {
    # sha256 and size of openai-community/gpt2 model.safetensors (revision 607a30d7) as its LFS
    # pointer gives them; for the other sizes the download is checked as download_gpt2 describes.
    "small": PublishedCheckpoint("gpt2", GPTConfig.gpt2("small"),
                                 "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707", 548105171),
    "medium": PublishedCheckpoint("gpt2-medium", GPTConfig.gpt2("medium")),
    "large": PublishedCheckpoint("gpt2-large", GPTConfig.gpt2("large")),
    "xl": PublishedCheckpoint("gpt2-xl", GPTConfig.gpt2("xl")),
}


def _verify_weights(path: Path, checkpoint: PublishedCheckpoint) -> str:
    """Check a downloaded weights file (published checksum, or size and header); return its sha256."""
    digest = file_sha256(path)
    if checkpoint.sha256 is not None and digest != checkpoint.sha256:
        raise RuntimeError(f"{path.name}: sha256 {digest} does not match the published {checkpoint.sha256}")
    if checkpoint.n_bytes is not None and path.stat().st_size != checkpoint.n_bytes:
        raise RuntimeError(f"{path.name}: {path.stat().st_size} bytes, expected {checkpoint.n_bytes}")
    try:
        with safe_open(path, framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as err:  # safetensors raises its own error types for a corrupt header
        raise RuntimeError(f"{path.name} is not a readable safetensors file: {err}") from err
    try:
        check_gpt2_state_dict(shapes, checkpoint.config)
    except ValueError as err:
        raise RuntimeError(f"{path.name} does not hold GPT-2 weights of the expected shapes: {err}") from err
    return digest


def download_gpt2(size: str = "small", cache_dir: str | Path = CACHE_DIR / "gpt2",
                  base_url: str = HF_BASE_URL, read_timeout: float = 60.0, max_seconds: float = 3600.0) -> Path:
    """Download GPT-2's published `model.safetensors` and `config.json`; return the weights' path.

    Files go to `cache_dir/<size>/`. The weights are checked against the published sha256
    where we have it (GPT-2 small); for the other sizes against the server's Content-Length,
    and by parsing the safetensors header for the expected tensor names and shapes. Either
    way the file's sha256 is stored beside it (`model.safetensors.sha256`) and every later
    call verifies it, downloading again if the file changed. Needs the network the first time.
    Each network read may wait `read_timeout` seconds, and both files together `max_seconds`.
    """
    if size not in GPT2_CHECKPOINTS:
        raise ValueError(f"unknown GPT-2 size {size!r}; choose one of {sorted(GPT2_CHECKPOINTS)}")
    checkpoint = GPT2_CHECKPOINTS[size]
    folder = Path(cache_dir) / size
    weights, digest_file, config = (folder / "model.safetensors", folder / "model.safetensors.sha256",
                                    folder / "config.json")
    if weights.exists() and digest_file.exists() and config.exists():
        if file_sha256(weights) == digest_file.read_text().strip():
            return weights
        weights.unlink()  # changed since it was verified: fetch it again
    folder.mkdir(parents=True, exist_ok=True)
    url = f"{base_url}/{checkpoint.repo}/resolve/main"
    deadline = time.monotonic() + max_seconds
    try:
        fetch(f"{url}/config.json", config, f"GPT-2 {size} config.json", read_timeout, deadline)
        fetch(f"{url}/model.safetensors", weights, f"GPT-2 {size} model.safetensors", read_timeout, deadline)
    except OSError as err:  # URLError, HTTPError, timeouts and refused connections are all OSErrors
        raise RuntimeError(f"could not download GPT-2 {size} weights (no network?): {err}; "
                           "the course runs offline with a locally made checkpoint instead") from err
    try:
        digest = _verify_weights(weights, checkpoint)
    except RuntimeError:
        weights.unlink()
        raise
    digest_file.write_text(digest + "\n")
    return weights
