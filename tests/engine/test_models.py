"""Resolving a config's ``model`` (folder, .gguf, store, Hub), loading it, and the clear errors."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from arkor._home import arkor_home
from arkor.engine._device import Placement
from arkor.engine._models import (
    ModelError,
    check_4bit,
    load_model,
    load_tokenizer,
    require_chat_template,
    resolve_model,
)
from arkor.engine._store import GGUF_CACHE_NAME, ModelStore
from arkor.errors import ArkorError
from tests.utils.tiny_gguf import build_tiny_gguf

CPU = Placement("cpu", torch.float32)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tiny_model, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def logits(source: str | Path, text: str = "the capital of france is paris") -> torch.Tensor:
    """The logits a folder's model gives for ``text``, to compare two copies of a model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        result: torch.Tensor = model(**tokenizer(text, return_tensors="pt")).logits
    return result


# --- resolution order --------------------------------------------------------------------------


def test_a_folder_resolves_to_itself(tiny_model: Path) -> None:
    resolved = resolve_model(str(tiny_model))
    assert (resolved.kind, resolved.source, resolved.requested) == (
        "folder",
        str(tiny_model.resolve()),
        str(tiny_model),
    )


def test_a_folder_beats_a_store_id_of_the_same_spelling(tiny_model: Path, project: Path) -> None:
    ModelStore().import_model(tiny_model, "tests/tiny")
    shutil.copytree(tiny_model, project / "tests" / "tiny")
    resolved = resolve_model("tests/tiny")
    assert (resolved.kind, resolved.source) == ("folder", str(project / "tests" / "tiny"))


def test_a_store_id_beats_the_hub(tiny_model: Path) -> None:
    stored = ModelStore().import_model(tiny_model, "HuggingFaceTB/SmolLM2-135M-Instruct")
    resolved = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (resolved.kind, resolved.source) == ("store", str(stored.path))


@pytest.mark.parametrize("model", ["gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_anything_else_is_a_hub_id(model: str) -> None:
    """Resolving never reaches the network; loading does, through the HF cache."""
    resolved = resolve_model(model)
    assert (resolved.kind, resolved.source) == ("hub", model)


def test_a_gguf_file_is_converted_once_and_the_cache_reused(
    tiny_model: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    """The cache is keyed by content: a second call, or a copy elsewhere, converts nothing."""
    progress: list[str] = []
    first = resolve_model(str(tiny_gguf), progress=progress.append)
    assert first.kind == "gguf"
    assert Path(first.source).parent == arkor_home() / "models" / GGUF_CACHE_NAME
    assert len(progress) == 1 and "Converting tiny.gguf" in progress[0]

    copy = tmp_path / "copy" / "renamed.gguf"
    copy.parent.mkdir()
    shutil.copyfile(tiny_gguf, copy)
    assert resolve_model(str(tiny_gguf), progress=progress.append).source == first.source
    assert resolve_model(str(copy), progress=progress.append).source == first.source
    assert len(progress) == 1
    assert [path.name for path in (arkor_home() / "models" / GGUF_CACHE_NAME).iterdir()] == [
        Path(first.source).name
    ]
    assert torch.equal(logits(first.source), logits(tiny_model))


# --- loading -----------------------------------------------------------------------------------


def test_a_stored_model_loads_and_generates(tiny_model: Path) -> None:
    ModelStore().import_model(tiny_model, "tests/tiny")
    resolved = resolve_model("tests/tiny")
    tokenizer = load_tokenizer(resolved)
    model = load_model(resolved, CPU)

    assert model.device.type == "cpu" and model.dtype == torch.float32
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(
            **prompt, max_new_tokens=1, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    assert output.shape[1] == prompt["input_ids"].shape[1] + 1


def test_the_tokenizer_gets_a_pad_token(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-pad"
    shutil.copytree(tiny_model, folder)
    tokenizer = load_tokenizer(resolve_model(str(folder)))
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    assert load_tokenizer(resolve_model(str(folder))).pad_token == "<|im_end|>"


# --- errors ------------------------------------------------------------------------------------


def test_a_hub_id_that_cannot_be_fetched_names_the_air_gapped_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    resolved = resolve_model("arkor-tests/no-such-model")
    with pytest.raises(ModelError) as error:
        load_tokenizer(resolved)
    message = str(error.value)
    assert "`arkor models import PATH --name arkor-tests/no-such-model`" in message
    assert "\n" not in message
    with pytest.raises(ModelError, match="arkor models import"):
        load_model(resolved, CPU)


@pytest.mark.parametrize(
    "model", ["./nope", "/nowhere/model", "~/nope-arkor", "nope.gguf", "a/b/c"]
)
def test_a_missing_path_says_it_does_not_exist(model: str) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(model)


def test_a_folder_without_weights_is_an_error(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"has no weights \(\*\.safetensors or \*\.bin files\)"):
        resolve_model(str(folder))


def test_a_single_file_that_is_not_gguf_is_an_error(tiny_model: Path) -> None:
    with pytest.raises(ModelError, match=r"only single-file format Arkor loads is \.gguf"):
        resolve_model(str(tiny_model / "model.safetensors"))


def test_a_gguf_suffix_on_something_else_is_an_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_text("not a model")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        resolve_model(str(fake))


def test_4bit_on_this_cpu_needs_cuda_and_bitsandbytes(tiny_model: Path) -> None:
    with pytest.raises(ModelError) as error:
        check_4bit(CPU)
    message = str(error.value)
    assert "needs a CUDA GPU and bitsandbytes" in message
    assert "`pip install bitsandbytes`" in message
    assert "a CUDA GPU (this run is on cpu)" in message
    assert error.value.exit_code == 1
    with pytest.raises(ModelError, match="needs a CUDA GPU"):
        load_model(resolve_model(str(tiny_model)), CPU, load_in_4bit=True)


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here"
)
def test_4bit_on_a_gpu_without_bitsandbytes_names_it() -> None:
    with pytest.raises(ModelError, match=r"lacks bitsandbytes \(not installed\)"):
        check_4bit(Placement("cuda", torch.bfloat16))


def test_chat_data_needs_a_chat_template(tiny_model: Path) -> None:
    tokenizer = load_tokenizer(resolve_model(str(tiny_model)))
    require_chat_template(tokenizer, "tests/tiny")
    tokenizer.chat_template = None
    with pytest.raises(ModelError) as error:
        require_chat_template(tokenizer, "tests/tiny")
    message = str(error.value)
    assert "The tokenizer of `tests/tiny` has no chat template" in message
    assert "chat_template" in message and "prompt_completion or text" in message
    assert isinstance(error.value, ArkorError)
