"""Fault injection for checkpoints and saved encoders: symlinked and odd targets, folders the course did not
make, LoRA models, edited records, and loads that run while another process saves."""

import json
import multiprocessing
import time

import pytest
import torch

from llmcourse.checkpoint import load_checkpoint, save_checkpoint
from llmcourse.encoder import BertModel
from llmcourse.lora import add_lora, merge_lora
from llmcourse.mlm import EncoderHistory, EncoderSettings, load_encoder, save_encoder
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import REPO_ROOT, set_seed
from llmcourse.train import configure_optimizer


def tiny_model(seed: int = 0, vocab_size: int = 256, d_model: int = 32) -> GPTModel:
    set_seed(seed)
    return GPTModel(GPTConfig(vocab_size=vocab_size, context_length=16, d_model=d_model, n_heads=4, n_layers=2,
                              dropout=0.0))


# --- a symlinked checkpoint folder ----------------------------------------------------------------


def test_saving_through_a_symlinked_folder_saves_into_its_target_every_time(tmp_path):
    target = tmp_path / "disk" / "run1"
    target.parent.mkdir()
    save_checkpoint(target, tiny_model(), step=1)
    link = tmp_path / "latest"
    link.symlink_to(target, target_is_directory=True)
    for step in (2, 3, 4):
        assert save_checkpoint(link, tiny_model(seed=step), step=step) == link
        assert link.is_symlink()
        assert load_checkpoint(target, "cpu").step == step == load_checkpoint(link, "cpu").step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "latest"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["run1"]


def test_a_dangling_symlink_is_saved_through_to_the_folder_it_names(tmp_path):
    link = tmp_path / "latest"
    link.symlink_to(tmp_path / "not_yet", target_is_directory=True)
    save_checkpoint(link, tiny_model(), step=5)
    assert link.is_symlink() and load_checkpoint(tmp_path / "not_yet", "cpu").step == 5


# --- folders the course did not make --------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".checkpoint-old", ".checkpoint-new"])
def test_a_users_folder_named_like_a_save_sibling_is_never_deleted(tmp_path, suffix):
    save_checkpoint(tmp_path / "ckpt", tiny_model(), step=1)
    mine = tmp_path / f"ckpt{suffix}"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match=rf"ckpt{suffix} was not made by save_checkpoint.*rename or move it"):
        save_checkpoint(tmp_path / "ckpt", tiny_model(seed=1), step=2)
    assert (mine / "notes.txt").read_text() == "my notes"
    assert load_checkpoint(tmp_path / "ckpt", "cpu").step == 1


def test_a_users_old_sibling_is_not_moved_into_place_when_the_checkpoint_is_missing(tmp_path):
    mine = tmp_path / "ckpt.checkpoint-old"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match="was not made by save_checkpoint"):
        save_checkpoint(tmp_path / "ckpt", tiny_model(), step=1)
    assert (mine / "notes.txt").read_text() == "my notes" and not (tmp_path / "ckpt").exists()


def test_a_file_named_like_a_save_sibling_is_never_deleted(tmp_path):
    (tmp_path / "ckpt.checkpoint-new").write_text("a file")
    with pytest.raises(ValueError, match="was not made by save_checkpoint"):
        save_checkpoint(tmp_path / "ckpt", tiny_model(), step=1)
    assert (tmp_path / "ckpt.checkpoint-new").read_text() == "a file"


def test_a_successful_save_leaves_only_checkpoint_files(tmp_path):
    for step in (1, 2):
        save_checkpoint(tmp_path / "ckpt", tiny_model(), step=step)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# --- odd targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [".", "", "..", "/"])
def test_the_current_folder_and_those_above_it_are_refused(tmp_path, monkeypatch, target):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notebook.ipynb").write_text("{}")
    monkeypatch.chdir(work)
    with pytest.raises(ValueError, match="is the current folder or one above it.*a folder of its own"):
        save_checkpoint(target, tiny_model())
    assert (work / "notebook.ipynb").read_text() == "{}"


def test_the_repository_root_is_refused(monkeypatch):
    monkeypatch.chdir(REPO_ROOT / "tests")
    with pytest.raises(ValueError, match="is the current folder or one above it"):
        save_checkpoint(REPO_ROOT, tiny_model())


def test_a_file_and_a_path_through_a_file_are_refused(tmp_path):
    (tmp_path / "model.pt").write_text("not a folder")
    with pytest.raises(ValueError, match=r"model.pt is a file; a checkpoint is a folder"):
        save_checkpoint(tmp_path / "model.pt", tiny_model())
    with pytest.raises(ValueError, match=r"model.pt is a file, not a folder: cannot save a checkpoint inside it"):
        save_checkpoint(tmp_path / "model.pt" / "deeper" / "ckpt", tiny_model())
    assert (tmp_path / "model.pt").read_text() == "not a folder"


# --- LoRA -----------------------------------------------------------------------------------------


def test_a_model_with_lora_layers_is_refused_at_save_with_the_advice_to_merge(tmp_path):
    model = tiny_model()
    add_lora(model, rank=2, alpha=4)
    with pytest.raises(ValueError, match=r"48 tensors its config does not build \(blocks.0.attn.W_key.A, .*merge_lora\(model\)"):
        save_checkpoint(tmp_path / "ckpt", model)
    assert not (tmp_path / "ckpt").exists()
    merge_lora(model)
    save_checkpoint(tmp_path / "ckpt", model)
    ids = torch.randint(0, 256, (1, 8))
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "ckpt", "cpu").model(ids), model.eval()(ids))


# --- the saved encoder ----------------------------------------------------------------------------


def tiny_encoder_settings() -> EncoderSettings:
    return EncoderSettings(vocab_size=64, context_length=16, d_model=16, n_heads=2, n_layers=1, dropout=0.0)


def edit_losses(data):
    """The same JSON data with every "mlm_loss" entry replaced."""
    if isinstance(data, dict):
        return {key: [9.0] if key == "mlm_loss" else edit_losses(value) for key, value in data.items()}
    return data


def test_an_edited_encoder_record_is_refused(tmp_path):
    settings = tiny_encoder_settings()
    set_seed(0)
    save_encoder(tmp_path / "enc", BertModel(settings.model_config()), settings, EncoderHistory(mlm_loss=[2.0]))
    model, record = load_encoder(tmp_path / "enc")
    assert isinstance(model, BertModel) and not model.training
    assert record["settings"]["d_model"] == 16 and record["history"]["mlm_loss"] == [2.0]
    for path in (tmp_path / "enc").glob("*.json"):  # whichever file records the history, edit it there
        path.write_text(json.dumps(edit_losses(json.loads(path.read_text()))))
    with pytest.raises(ValueError, match="was changed"):
        load_encoder(tmp_path / "enc")


def test_encoder_settings_that_do_not_describe_the_model_are_refused_at_save(tmp_path):
    settings = tiny_encoder_settings()
    model = BertModel(EncoderSettings(vocab_size=64, context_length=16, d_model=32, n_heads=2, n_layers=1,
                                      dropout=0.0).model_config())
    with pytest.raises(ValueError, match="settings do not describe the model"):
        save_encoder(tmp_path / "enc", model, settings, EncoderHistory())


def test_a_gpt_checkpoint_is_not_loaded_as_an_encoder(tmp_path):
    save_checkpoint(tmp_path / "gpt", tiny_model())
    with pytest.raises(ValueError, match="holds a GPTModel, not an encoder saved by save_encoder"):
        load_encoder(tmp_path / "gpt")


# --- loading while another process saves ----------------------------------------------------------


def save_in_a_loop(directory, stop, saves) -> None:
    """The saving process: two versions of a model, saved in turn over the same folder until told to stop."""
    torch.set_num_threads(1)
    models = [tiny_model(seed, vocab_size=2000, d_model=128) for seed in (1, 2)]
    optimizers = []
    for model in models:
        optimizer = configure_optimizer(model, 1e-3)
        model(torch.randint(0, 2000, (2, 8))).sum().backward()
        optimizer.step()
        optimizers.append(optimizer)
    while not stop.is_set():
        turn = saves.value % 2
        save_checkpoint(directory, models[turn], optimizers[turn], step=turn + 1)
        with saves.get_lock():
            saves.value += 1


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork to start quickly")
def test_loads_while_another_process_saves_see_a_whole_checkpoint(tmp_path):
    directory = tmp_path / "ckpt"
    save_checkpoint(directory, tiny_model(0, vocab_size=2000, d_model=128), step=0)
    context = multiprocessing.get_context("fork")
    stop, saves = context.Event(), context.Value("i", 0)
    saver = context.Process(target=save_in_a_loop, args=(directory, stop, saves), daemon=True)
    saver.start()
    try:
        while saves.value < 2 and saver.is_alive():
            time.sleep(0.01)
        loads, deadline = 0, time.monotonic() + 4
        while time.monotonic() < deadline:
            checkpoint = load_checkpoint(directory, "cpu")
            assert checkpoint.step in (1, 2) and checkpoint.optimizer_state is not None
            loads += 1
    finally:
        stop.set()
        saver.join(timeout=30)
    assert saver.exitcode == 0 and saves.value >= 10 and loads >= 10
