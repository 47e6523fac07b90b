"""Write a folder's tiny Llama and tokenizer as a single GGUF file, the way llama.cpp does.

Lets the GGUF import path run offline in a second: the file has float32 tensors, a
byte-level BPE vocabulary with its merges, and the chat template, under llama.cpp's
key and tensor names (with its rotary permutation of the q/k projections).
"""

from __future__ import annotations

import json
from pathlib import Path


def _permute(weight: object, heads: int) -> object:
    """llama.cpp's reordering of q/k rows, which transformers undoes on load."""
    import numpy as np

    array = np.asarray(weight)
    rows = array.shape[0]
    return (
        array.reshape(heads, 2, rows // heads // 2, *array.shape[1:])
        .swapaxes(1, 2)
        .reshape(array.shape)
    )


def build_tiny_gguf(model_folder: Path, path: Path) -> Path:
    """Write the tiny model in ``model_folder`` (see ``tiny_model.py``) to ``path``."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    tokenizer = json.loads((model_folder / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_config = json.loads(
        (model_folder / "tokenizer_config.json").read_text(encoding="utf-8")
    )
    chat_template = (model_folder / "chat_template.jinja").read_text(encoding="utf-8")
    weights = load_file(str(model_folder / "model.safetensors"))

    vocab: dict[str, int] = dict(tokenizer["model"]["vocab"])
    special = {added["content"]: added["id"] for added in tokenizer["added_tokens"]}
    vocab.update(special)
    tokens = sorted(vocab, key=vocab.__getitem__)
    merges = [
        merge if isinstance(merge, str) else " ".join(merge)
        for merge in tokenizer["model"]["merges"]
    ]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL for token in tokens]
    )
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special[tokenizer_config["bos_token"]])
    writer.add_eos_token_id(special[tokenizer_config["eos_token"]])
    writer.add_pad_token_id(special[tokenizer_config["pad_token"]])
    writer.add_chat_template(chat_template)

    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    for layer in range(config["num_hidden_layers"]):
        for hf_name, gguf_name in names.items():
            tensor = weights[f"model.layers.{layer}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                tensor = _permute(tensor, heads)
            elif gguf_name == "attn_k":
                tensor = _permute(tensor, kv_heads)
            writer.add_tensor(f"blk.{layer}.{gguf_name}.weight", np.ascontiguousarray(tensor))
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
