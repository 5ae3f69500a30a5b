"""GPT-2-layout weights loaded into GPTModel give transformers' logits; bad state dicts and downloads fail clearly."""

import http.server
import io
import json
import threading
import time

import pytest
import torch
import transformers
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from llmcourse import download, weights
from llmcourse.download import file_sha256
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.weights import (PublishedCheckpoint, config_from_gpt2_state_dict, download_gpt2,
                               gpt2_state_dict_to_ours, gpt_from_transformers, load_gpt2_safetensors,
                               load_gpt2_weights)

transformers.logging.set_verbosity_error()


def hf_gpt2(d_model: int, n_heads: int, n_layers: int, vocab_size: int = 97, context_length: int = 24,
            seed: int = 0) -> GPT2LMHeadModel:
    """A small randomly initialised GPT-2 from transformers, in eval mode."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=context_length, n_embd=d_model, n_head=n_heads,
                        n_layer=n_layers, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # make biases, LayerNorms and attention patterns far from their trivial init
        for name, param in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                param.add_(0.05 * torch.randn_like(param))
            if name.endswith("attn.c_attn.weight"):
                param.mul_(10.0)
    return model


def published_layout(hf_model: GPT2LMHeadModel) -> dict[str, torch.Tensor]:
    """The state dict as GPT-2's model.safetensors stores it: no prefix, no lm_head, mask buffers."""
    cfg = hf_model.config
    state = {name.removeprefix("transformer."): tensor.clone() for name, tensor in hf_model.state_dict().items()
             if name != "lm_head.weight"}
    mask = torch.tril(torch.ones(cfg.n_positions, cfg.n_positions)).view(1, 1, cfg.n_positions, cfg.n_positions)
    for i in range(cfg.n_layer):
        state[f"h.{i}.attn.bias"] = mask.clone()
    return state


def hf_logits(hf_model: GPT2LMHeadModel, token_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf_model(token_ids).logits


@pytest.mark.parametrize("d_model, n_heads, n_layers", [(32, 4, 2), (48, 3, 3)])
def test_logits_match_transformers_gpt2(d_model, n_heads, n_layers):
    hf_model = hf_gpt2(d_model, n_heads, n_layers)
    ours = gpt_from_transformers(hf_model)
    token_ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours_logits = ours(token_ids)
    torch.testing.assert_close(ours_logits, hf_logits(hf_model, token_ids), atol=1e-5, rtol=0)


def test_state_dict_without_transformer_prefix_and_with_mask_buffers_loads():
    hf_model = hf_gpt2(48, 4, 2)
    state = published_layout(hf_model)
    assert not any(name.startswith("transformer.") for name in state)
    cfg = config_from_gpt2_state_dict(state, n_heads=4, dropout=0.0)
    assert (cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.vocab_size, cfg.context_length) == (48, 4, 2, 97, 24)
    ours = load_gpt2_weights(GPTModel(cfg), state).eval()
    token_ids = torch.randint(0, 97, (1, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(token_ids), hf_logits(hf_model, token_ids), atol=1e-5, rtol=0)


def test_fused_qkv_is_split_and_conv1d_weights_transposed():
    hf_model = hf_gpt2(32, 4, 1)
    mapped = gpt2_state_dict_to_ours(hf_model.state_dict(), GPTConfig(vocab_size=97, context_length=24,
                                                                       d_model=32, n_heads=4, n_layers=1))
    c_attn = hf_model.transformer.h[0].attn.c_attn.weight
    assert torch.equal(mapped["blocks.0.attn.W_key.weight"], c_attn[:, 32:64].T)
    assert torch.equal(mapped["blocks.0.ff.fc_out.weight"], hf_model.transformer.h[0].mlp.c_proj.weight.T)


def test_tied_head_shares_storage_after_loading():
    ours = gpt_from_transformers(hf_gpt2(32, 4, 2))
    assert ours.out_head.weight.data_ptr() == ours.tok_emb.weight.data_ptr()


def test_untied_checkpoint_needs_untied_config():
    hf_model = hf_gpt2(32, 4, 1)
    state = dict(hf_model.state_dict())
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    tied = GPTConfig(vocab_size=97, context_length=24, d_model=32, n_heads=4, n_layers=1)
    with pytest.raises(ValueError, match="tie_weights"):
        load_gpt2_weights(GPTModel(tied), state)
    untied = config_from_gpt2_state_dict(state, n_heads=4)
    assert not untied.tie_weights
    ours = load_gpt2_weights(GPTModel(untied), state)
    assert torch.equal(ours.out_head.weight, state["lm_head.weight"])


def test_safetensors_round_trip_with_config_json(tmp_path):
    hf_model = hf_gpt2(48, 4, 2)
    save_file(published_layout(hf_model), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(hf_model.config.to_dict()))
    ours = load_gpt2_safetensors(tmp_path / "model.safetensors")
    assert ours.cfg.n_heads == 4 and not ours.training
    token_ids = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(token_ids), hf_logits(hf_model, token_ids), atol=1e-5, rtol=0)


def test_safetensors_without_config_infers_config_from_shapes(tmp_path):
    hf_model = hf_gpt2(64, 1, 2)  # d_model 64 with the GPT-2 rule of 64-dimensional heads: 1 head
    save_file(published_layout(hf_model), tmp_path / "model.safetensors")
    ours = load_gpt2_safetensors(tmp_path / "model.safetensors", dropout=0.0)
    assert (ours.cfg.n_heads, ours.cfg.dropout) == (1, 0.0)
    token_ids = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(ours(token_ids), hf_logits(hf_model, token_ids), atol=1e-5, rtol=0)


def test_bad_state_dict_names_every_missing_extra_and_misshaped_tensor():
    cfg = GPTConfig(vocab_size=97, context_length=24, d_model=32, n_heads=4, n_layers=2)
    state = dict(hf_gpt2(32, 4, 2).state_dict())
    del state["transformer.h.0.ln_1.bias"], state["transformer.ln_f.weight"]
    state["transformer.h.1.attn.rotary.weight"] = torch.zeros(3)
    state["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(128, 32)  # Linear layout, not Conv1D
    state["transformer.wpe.weight"] = torch.zeros(16, 32)
    with pytest.raises(ValueError) as error:
        gpt2_state_dict_to_ours(state, cfg)
    message = str(error.value)
    for name in ["h.0.ln_1.bias", "ln_f.weight", "h.1.attn.rotary.weight", "h.1.mlp.c_fc.weight (128, 32)",
                 "wpe.weight (16, 32)"]:
        assert name in message
    assert "missing" in message and "unexpected" in message and "wrongly shaped" in message


def test_wrong_depth_is_rejected():
    state = hf_gpt2(32, 4, 3).state_dict()
    cfg = GPTConfig(vocab_size=97, context_length=24, d_model=32, n_heads=4, n_layers=2)
    with pytest.raises(ValueError, match=r"unexpected tensors: h\.2\.ln_1\.weight"):
        load_gpt2_weights(GPTModel(cfg), state)


def test_unsupported_hf_config_is_rejected():
    config = GPT2Config(vocab_size=97, n_positions=24, n_embd=32, n_head=4, n_layer=1, activation_function="relu",
                        n_inner=64)
    with pytest.raises(ValueError, match="activation_function='relu'.*n_inner=64"):
        weights.config_from_hf_config(config)


# Download: served from local files or a fake opener, never from the network.

@pytest.fixture
def tiny_published(tmp_path, monkeypatch):
    """A tiny GPT-2 'published' under a file:// URL laid out like the hub, registered as size 'tiny'."""
    hf_model = hf_gpt2(32, 4, 2)
    served = tmp_path / "hub" / "tiny-gpt2" / "resolve" / "main"
    served.mkdir(parents=True)
    save_file(published_layout(hf_model), served / "model.safetensors")
    (served / "config.json").write_text(json.dumps(hf_model.config.to_dict()))
    cfg = GPTConfig(vocab_size=97, context_length=24, d_model=32, n_heads=4, n_layers=2)
    monkeypatch.setitem(weights.GPT2_CHECKPOINTS, "tiny", PublishedCheckpoint("tiny-gpt2", cfg))
    return hf_model, served, (tmp_path / "hub").as_uri()


def test_download_fetches_verifies_and_records_sha256(tmp_path, tiny_published):
    hf_model, served, base_url = tiny_published
    path = download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url=base_url)
    assert path.read_bytes() == (served / "model.safetensors").read_bytes()
    assert (path.parent / "model.safetensors.sha256").read_text().strip() == file_sha256(path)
    token_ids = torch.arange(12).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(load_gpt2_safetensors(path)(token_ids), hf_logits(hf_model, token_ids),
                                   atol=1e-5, rtol=0)


def test_download_reuses_a_verified_file_and_replaces_a_changed_one(tmp_path, tiny_published):
    _, served, base_url = tiny_published
    path = download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url=base_url)
    assert download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url="file:///nowhere") == path
    path.write_bytes(b"corrupted")
    download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url=base_url)
    assert path.read_bytes() == (served / "model.safetensors").read_bytes()


def test_download_rejects_a_published_checksum_mismatch(tmp_path, tiny_published, monkeypatch):
    _, _, base_url = tiny_published
    wrong = PublishedCheckpoint("tiny-gpt2", weights.GPT2_CHECKPOINTS["tiny"].config, sha256="0" * 64)
    monkeypatch.setitem(weights.GPT2_CHECKPOINTS, "tiny", wrong)
    with pytest.raises(RuntimeError, match="does not match the published"):
        download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url=base_url)
    assert not (tmp_path / "cache" / "tiny" / "model.safetensors").exists()


def test_download_rejects_a_file_with_the_wrong_tensors(tmp_path, tiny_published, monkeypatch):
    _, _, base_url = tiny_published
    deeper = GPTConfig(vocab_size=97, context_length=24, d_model=32, n_heads=4, n_layers=3)
    monkeypatch.setitem(weights.GPT2_CHECKPOINTS, "tiny", PublishedCheckpoint("tiny-gpt2", deeper))
    with pytest.raises(RuntimeError, match=r"expected shapes.*missing tensors: h\.2\.ln_1\.weight"):
        download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url=base_url)


def test_download_rejects_a_truncated_transfer(tmp_path, tiny_published, monkeypatch):
    class ShortResponse(io.BytesIO):
        headers = {"Content-Length": "1000"}

    monkeypatch.setattr(download, "urlopen", lambda url, timeout: ShortResponse(b"only 20 bytes arrive"))
    with pytest.raises(RuntimeError, match="received 20 bytes, the server announced 1000"):
        download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url="https://example.invalid")
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []


def test_download_from_an_unreachable_url_says_so(tmp_path, tiny_published):
    with pytest.raises(RuntimeError, match=r"could not download GPT-2 tiny weights \(no network\?\).*offline"):
        download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url=(tmp_path / "no-such-hub").as_uri())


def test_download_of_an_unknown_size_lists_the_sizes(tmp_path):
    with pytest.raises(ValueError, match=r"unknown GPT-2 size 'huge'.*'large', 'medium', 'small', 'xl'"):
        download_gpt2("huge", cache_dir=tmp_path)


def test_download_stops_at_its_deadline_when_the_server_trickles(tmp_path, tiny_published):
    """A loopback server announces 10,000 bytes and sends one every 20 ms: the per-read timeout never
    fires, so only the overall deadline can end the download."""
    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "10000")
            self.end_headers()
            try:
                for _ in range(500):  # at most 10 s, even if nobody stops it
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.02)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="config.json: the download's time limit ran out after"):
            download_gpt2("tiny", cache_dir=tmp_path / "cache", base_url=f"http://127.0.0.1:{server.server_port}",
                          read_timeout=5, max_seconds=1)
        assert time.monotonic() - started < 4
    finally:
        server.shutdown()
        server.server_close()
    assert list((tmp_path / "cache" / "tiny").iterdir()) == []


def test_truncated_gpt2_safetensors_names_the_file(tmp_path):
    hf_model = hf_gpt2(32, 4, 1)
    save_file(published_layout(hf_model), tmp_path / "model.safetensors")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"model.safetensors is not a readable safetensors file \(corrupt or "):
        load_gpt2_safetensors(tmp_path / "model.safetensors")
