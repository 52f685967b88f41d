"""The base model's shape (its config.json) and its parameter count, for the
memory, disk and device estimates of stages 2 and 3, read before any weights
are loaded."""
import json
from pathlib import Path


def model_shape(cfg) -> dict | None:
    """The base model's config.json, if it is local or cached (None otherwise)."""
    base = cfg.base_model
    path = Path(base) / "config.json"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(base, "config.json")
        path = Path(cached) if isinstance(cached, str) else None
    return json.loads(path.read_text()) if path else None


def weights_to_download(base: str, cache_dir=None) -> tuple[int, int]:
    """(weight files missing from the Hugging Face cache, weight files in all) for a hub
    model: its config.json alone is cached by a dry run or a broken-off download, so
    the weights are counted, from the cached shard index where there is one."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name):
        return isinstance(try_to_load_from_cache(base, name, cache_dir=cache_dir), str)

    for single in ("model.safetensors", "pytorch_model.bin"):     # older repos: .bin only
        index = try_to_load_from_cache(base, single + ".index.json", cache_dir=cache_dir)
        if isinstance(index, str):
            shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
            return sum(not cached(shard) for shard in shards), len(shards)
        if cached(single):
            return 0, 1
    return 1, 1


def parameter_count(shape: dict) -> int:
    """Parameters of a Llama-style decoder from its config.json: per layer q and o
    (all heads), k and v (num_key_value_heads only: grouped-query attention), the
    gated MLP (gate, up, down) and two RMSNorms; then the embeddings, the final
    norm, and lm_head only when it is not tied to the embeddings."""
    h, inter = shape["hidden_size"], shape["intermediate_size"]
    heads = shape["num_attention_heads"]
    kv_heads = shape.get("num_key_value_heads") or heads
    head_dim = shape.get("head_dim") or h // heads
    q_width, kv_width = heads * head_dim, kv_heads * head_dim
    attention = h * q_width + 2 * h * kv_width + q_width * h
    if shape.get("attention_bias"):
        attention += q_width + 2 * kv_width + h
    mlp = 3 * h * inter + (2 * inter + h if shape.get("mlp_bias") else 0)
    layer = attention + mlp + 2 * h
    return shape["num_hidden_layers"] * layer + h + embedding_parameter_count(shape)


def embedding_parameter_count(shape: dict) -> int:
    """The input embeddings, plus lm_head when it is not tied to them: bitsandbytes
    leaves both in 16 bits when the rest is quantised to 4."""
    tied = shape.get("tie_word_embeddings", False)
    return shape["vocab_size"] * shape["hidden_size"] * (1 if tied else 2)


# --- where a model fits: resources.choose_placement, for stages 3 and 4 -------------

# A model in bf16 takes its weights plus a fifth for activations and the KV cache;
# on a GPU, 2 GiB more for CUDA itself.
RUN_OVERHEAD = 1.2
CUDA_RESERVE_BYTES = 2 * 2**30
# float32 on CPU: the weights plus half again for the libraries and a layer's copies.
FLOAT32_RAM_OVERHEAD = 1.5


def bf16_run_bytes(params: int) -> float:
    """Memory a model of `params` parameters needs to run in bf16 (weights + a fifth)."""
    return params * 2 * RUN_OVERHEAD


def gpu_bytes_needed(params: int) -> float:
    """GPU memory for the model in bf16: bf16_run_bytes plus CUDA's own 2 GiB."""
    return bf16_run_bytes(params) + CUDA_RESERVE_BYTES


def cpu_compute_dtype(params: int | None, ram_bytes: float) -> str:
    """The dtype on CPU: float32 when RAM allows (exact, and CPU bf16 is slow), else
    bfloat16; float32 when the size is unknown."""
    if params is None or params * 4 * FLOAT32_RAM_OVERHEAD < ram_bytes:
        return "float32"
    return "bfloat16"


# Bytes per value, by the dtype names safetensors headers use; dtype_bytes also takes the
# torch names merged_dtype and the compute dtype use.
DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


SAFETENSORS_NAMES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def dtype_bytes(dtype: str) -> int:
    """Bytes per value of a torch dtype name ("bfloat16") or a safetensors one ("BF16")."""
    return DTYPE_BYTES[SAFETENSORS_NAMES.get(dtype, dtype)]


def gib(n_bytes: float) -> float:
    return n_bytes / 2**30


def available_ram_gib() -> float:
    import psutil
    return gib(psutil.virtual_memory().available)
