"""Exports of a real adapter: portable PEFT folders, merged models, GGUF files llama.cpp lays out.

One run of the tiny model, imported into the model store as ``acme/tiny``, trains once
for the module; the exports are checked against what the engine itself answers.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from arkor.engine import ADAPTER_DIRNAME, CHECKPOINTS_DIRNAME, ModelStore
from arkor.engine._export import (
    _pre_tokenizer,
    atomic_folder,
    check_gguf_support,
    export_adapter,
)
from arkor.engine._models import resolve_model
from arkor.errors import UsageError
from tests.engine.test_train import run_job
from tests.utils.engine_answer import greedy_answer

STORE_ID = "acme/tiny"
UMASK = 0o027
"""Neither the usual 022 nor the worker's 077: the modes must follow whatever umask it is."""
HELLO = [{"role": "user", "content": "say hello"}]
LLAMA_TENSORS = {"token_embd.weight", "output_norm.weight"} | {
    f"blk.{block}.{part}.weight"
    for block in (0, 1)
    for part in (
        "attn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    )
}
"""llama.cpp's names for the tiny 2-block Llama; its tied output reuses ``token_embd``."""


class Trained:
    """The module's run: the home holding the store, and the run's output folder."""

    def __init__(self, home: Path, output: Path) -> None:
        self.home = home
        self.output = output
        self.adapter = output / ADAPTER_DIRNAME
        self.checkpoints = output / CHECKPOINTS_DIRNAME


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """``acme/tiny`` in a model store, and a 12-step run on it (checkpoints at 6 and 12)."""
    home = tmp_path_factory.mktemp("store-home")
    work = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARKOR_HOME", str(home))
        ModelStore().import_model(tiny_model, STORE_ID)
        previous = os.umask(UMASK)
        try:
            outcome, _, output = run_job(tiny_model, work, model=STORE_ID)
        finally:
            os.umask(previous)
    assert outcome.status == "completed", outcome.error
    return Trained(home, output)


@pytest.fixture
def store(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Iterator[Trained]:
    """The module's run, with its model store as this test's home (so ``acme/tiny`` resolves)."""
    monkeypatch.setenv("ARKOR_HOME", str(trained.home))
    yield trained


@pytest.mark.slow
def test_adapter_and_checkpoints_name_the_id_the_config_named(store: Trained) -> None:
    stored_folder = str(ModelStore().lookup(STORE_ID))
    folders = [
        store.adapter,
        store.checkpoints / "checkpoint-6",
        store.checkpoints / "checkpoint-12",
    ]
    for folder in folders:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        assert config["base_model_name_or_path"] == STORE_ID, folder
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert f"base_model: {STORE_ID}" in card
        assert stored_folder not in card, "the model card still names the store's folder"


@pytest.mark.slow
def test_every_artifact_file_has_the_mode_the_umask_gives(store: Trained) -> None:
    modes = {
        path.relative_to(store.output).as_posix(): path.stat().st_mode & 0o777
        for path in store.output.rglob("*")
        if path.is_file() and "cache" not in path.relative_to(store.output).parts
    }
    assert "adapter/adapter_model.safetensors" in modes and "adapter/tokenizer.json" in modes
    assert "checkpoints/checkpoint-6/adapter_model.safetensors" in modes
    assert {path: mode for path, mode in modes.items() if mode != 0o666 & ~UMASK} == {}


@pytest.mark.slow
def test_peft_export_is_the_adapter_and_tokenizer_without_trainer_state(
    store: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "peft"
    files = export_adapter(store.checkpoints / "checkpoint-6", out, "peft", model=STORE_ID)
    names = {path.name for path in files}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    assert not names & {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"}
    config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["base_model_name_or_path"] == STORE_ID


@pytest.mark.slow
def test_merged_model_answers_as_the_base_with_the_adapter(
    store: Trained, tiny_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    export_adapter(store.adapter, out, "merged", model=STORE_ID)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert not [name for name in model.state_dict() if "lora" in name]
    expected = greedy_answer(tiny_model, store.adapter, HELLO, 8)
    assert expected != greedy_answer(tiny_model, None, HELLO, 8), "training changed nothing"
    assert greedy_answer(out, None, HELLO, 8) == expected


@pytest.fixture(scope="module")
def exported_gguf(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARKOR_HOME", str(trained.home))
        (path,) = export_adapter(trained.adapter, out, "gguf", model=STORE_ID, name="tiny job")
    return path


@pytest.mark.slow
def test_gguf_has_llama_cpp_tensors_and_tokenizer(exported_gguf: Path, tiny_model: Path) -> None:
    import gguf
    from transformers import AutoTokenizer

    assert exported_gguf.name == "tiny-job.gguf"
    reader = gguf.GGUFReader(exported_gguf)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    assert set(tensors) == LLAMA_TENSORS and len(reader.tensors) == 20
    assert tensors["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert list(tensors["blk.0.attn_k.weight"].shape) == [64, 32]  # GGUF lists columns first

    def value(key: str) -> object:
        return reader.fields[key].contents()

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert value("general.architecture") == "llama"
    assert value("general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    assert value("llama.block_count") == 2
    assert value("llama.attention.head_count_kv") == 2
    assert value("llama.rope.dimension_count") == 16
    assert value("tokenizer.ggml.model") == "gpt2"
    assert value("tokenizer.ggml.pre") == "gpt-2"
    tokens = value("tokenizer.ggml.tokens")
    assert isinstance(tokens, list) and len(tokens) == 400
    assert tokens[tokenizer.eos_token_id] == "<|im_end|>"
    assert value("tokenizer.ggml.token_type")[tokenizer.eos_token_id] == gguf.TokenType.CONTROL
    assert len(value("tokenizer.ggml.merges")) > 0
    assert value("tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert value("tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert value("tokenizer.ggml.add_bos_token") is False
    assert value("tokenizer.chat_template") == tokenizer.chat_template


@pytest.mark.slow
def test_gguf_reads_back_as_the_merged_model(
    store: Trained, exported_gguf: Path, tmp_path: Path
) -> None:
    """transformers' GGUF reader undoes llama.cpp's layout; f16 is all that may differ."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = tmp_path / "merged"
    export_adapter(store.adapter, merged, "merged", model=STORE_ID)
    reference = AutoModelForCausalLM.from_pretrained(merged)
    folder, name = str(exported_gguf.parent), exported_gguf.name
    read_back = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    prompt = tokenizer.apply_chat_template(HELLO, add_generation_prompt=True, tokenize=False)
    ids = AutoTokenizer.from_pretrained(merged)(prompt, return_tensors="pt")["input_ids"]
    assert tokenizer(prompt, return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        expected = reference(ids).logits
        got = read_back(ids).logits.float()
    assert (got - expected).abs().max() < 0.02 * expected.abs().max()
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


@pytest.mark.slow
def test_gguf_refuses_other_architectures_before_writing(
    store: Trained, tiny_model: Path, tmp_path: Path
) -> None:
    qwen = tmp_path / "qwen"
    shutil.copytree(tiny_model, qwen)
    config = json.loads((qwen / "config.json").read_text(encoding="utf-8"))
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    (qwen / "config.json").write_text(json.dumps(config), encoding="utf-8")
    exports = tmp_path / "exports"
    exports.mkdir()
    with pytest.raises(UsageError, match="Llama-architecture") as refused:
        export_adapter(store.adapter, exports / "out", "gguf", model=str(qwen))
    assert "Qwen2ForCausalLM" in str(refused.value) and "--format merged" in str(refused.value)
    assert list(exports.iterdir()) == []


def test_pre_tokenizers_are_named_as_llama_cpp_names_them(tiny_model: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import AutoTokenizer

    def with_pre_tokenizer(name: str, pre: pre_tokenizers.PreTokenizer) -> Path:
        folder = tmp_path / name
        shutil.copytree(tiny_model, folder)
        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        backend.pre_tokenizer = pre
        backend.save(str(folder / "tokenizer.json"))
        return folder

    smollm = with_pre_tokenizer(
        "smollm",
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        ),
    )
    assert _pre_tokenizer(AutoTokenizer.from_pretrained(smollm), "smollm") == "smollm"
    assert _pre_tokenizer(AutoTokenizer.from_pretrained(tiny_model), "tiny") == "gpt-2"
    metaspace = with_pre_tokenizer("metaspace", pre_tokenizers.Metaspace())
    with pytest.raises(UsageError, match="byte-level BPE"):
        check_gguf_support(resolve_model(str(metaspace)))


def test_a_failed_export_leaves_the_old_folder_and_no_scraps(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    out = exports / "out"
    exports.mkdir()
    out.mkdir()
    (out / "kept.txt").write_text("old", encoding="utf-8")
    with pytest.raises(UsageError, match="--force"), atomic_folder(out, force=False):
        pass
    with pytest.raises(RuntimeError), atomic_folder(out, force=True) as staging:
        (staging / "half.bin").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert [path.name for path in exports.iterdir()] == ["out"]
    assert [path.name for path in out.iterdir()] == ["kept.txt"]
    with atomic_folder(out, force=True) as staging:
        (staging / "new.txt").write_text("new", encoding="utf-8")
    assert [path.name for path in exports.iterdir()] == ["out"]
    assert [path.name for path in out.iterdir()] == ["new.txt"]
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask() -> int:
    umask = os.umask(0o077)
    os.umask(umask)
    return umask
