"""Which GGUF type fits which card: for the merged model (its config.json) and each
type stage 5 can export, the GGUF file's size, the KV cache at the serving context
and a runtime allowance, against cards of 16 to 80 GB.

These are estimates from file sizes, not measured VRAM:
  file     = parameters x llama.cpp's bits per weight for the type / 8
  KV cache = layers x 2 (K and V) x kv_heads x head_dim x context x 2 bytes
             (llama-server's default f16 cache, every layer on the GPU)
  total    = file + KV cache + RUNTIME_GIB (CUDA context, compute buffers)
A card of N GB is taken to hold N GiB (an RTX 5090 reports 32607 MiB, an RTX 4090
24564 MiB: the GB on the box are binary, less a sliver the runtime allowance covers).

Llama 3.1 8B and 70B at 8192 tokens of context (the main config's serve_context_length):

>>> from styletune.train.gpu_plan import LLAMA31_70B, LLAMA31_8B
>>> print(format_table(fit_table(LLAMA31_8B, 8192)))
8.03B parameters, 8192-token context: KV cache 1.00 GiB (f16), runtime ~1 GiB
| type | bits/weight | file GiB | total GiB | 16 GB | 24 GB | 32 GB | 48 GB | 80 GB |
|---|---|---|---|---|---|---|---|---|
| bf16 * | 16.00 | 14.96 | 16.96 | - | fits | fits | fits | fits |
| q8_0 | 8.50 | 7.95 | 9.95 | fits | fits | fits | fits | fits |
| q6_K | 6.56 | 6.14 | 8.14 | fits | fits | fits | fits | fits |
| q5_K_M | 5.70 | 5.33 | 7.33 | fits | fits | fits | fits | fits |
| q4_K_M | 4.89 | 4.58 | 6.58 | fits | fits | fits | fits | fits |
| q4_K_S | 4.67 | 4.36 | 6.36 | fits | fits | fits | fits | fits |
| q3_K_M | 4.00 | 3.74 | 5.74 | fits | fits | fits | fits | fits |
| q2_K | 3.16 | 2.95 | 4.95 | fits | fits | fits | fits | fits |
* the largest type that fits one 32 GB card (RTX 5090)
>>> print(format_table(fit_table(LLAMA31_70B, 8192)))
70.55B parameters, 8192-token context: KV cache 2.50 GiB (f16), runtime ~1 GiB
| type | bits/weight | file GiB | total GiB | 16 GB | 24 GB | 32 GB | 48 GB | 80 GB |
|---|---|---|---|---|---|---|---|---|
| bf16 | 16.00 | 131.42 | 134.92 | - | - | - | - | - |
| q8_0 | 8.50 | 69.82 | 73.32 | - | - | - | - | fits |
| q6_K | 6.56 | 53.91 | 57.41 | - | - | - | - | fits |
| q5_K_M | 5.70 | 46.85 | 50.35 | - | - | - | - | fits |
| q4_K_M | 4.89 | 40.20 | 43.70 | - | - | - | fits | fits |
| q4_K_S | 4.67 | 38.33 | 41.83 | - | - | - | fits | fits |
| q3_K_M | 4.00 | 32.82 | 36.32 | - | - | - | fits | fits |
| q2_K * | 3.16 | 25.95 | 29.45 | - | - | fits | fits | fits |
* the largest type that fits one 32 GB card (RTX 5090), at a large loss of quality: see the warning
>>> for line in advice(fit_table(LLAMA31_70B, 8192), "q4_K_M"):
...     print(line)
q4_K_M needs ~43.7 GiB (estimate), more than one 32 GB RTX 5090 holds. It fits one 48 GB card, or two 24 GB cards (llama-server spreads the layers over every GPU it sees).
On one RTX 5090: keep q4_K_M with part of the model in CPU RAM: llama-server -ngl 58 (about 58 of 80 layers on the GPU; slower).
q2_K fits one RTX 5090 (~29.4 GiB) but loses much quality (llama.cpp: +3.52 perplexity on Llama-3-8B; q4_K_M +0.18), and stage 4 judged the unquantised weights. To keep quality: q4_K_M with -ngl 58 (slower), one 48 GB card or two 24 GB cards, or the 8B, which fits unquantised.
>>> advice(fit_table(LLAMA31_70B, 8192), "q2_K") == advice(fit_table(LLAMA31_70B, 8192), "q4_K_M")[-1:]
True
"""
import json
from dataclasses import dataclass
from math import floor
from pathlib import Path

from styletune.train.model_size import parameter_count

GIB = 1024 ** 3
# Bits per weight of a whole GGUF file, per llama.cpp type: llama.cpp's own figures for
# Llama-3.1-8B, the "bits/weight" rows of tools/quantize/README.md ("Quantization") in
# the llama.cpp that llama-cpp-python 0.3.36 vendors (what build_llama_server.sh builds).
# They are file averages: a k-quant keeps some tensors in a larger type (q4_K_M keeps
# about half of attn_v and ffn_down in q6_K: src/llama-quant.cpp), which the figure
# includes. With them, a 70B q4_K_M comes to 43.2 GB, as that README's table of
# Llama 3.1 sizes says (43.1 GB).
# bf16: the F16 row (the same two bytes per weight). A model whose rows are not a
# multiple of 256 wide gets a larger file than this: llama-quantize falls back to
# q5_0/q8_0 for those tensors (the rehearsal SmolLM2-135M, 576 wide: q4_K_M measured
# 105 MB, estimated 82 MB). Llama 3.1's widths (4096, 8192, 14336, 28672) are multiples.
BITS_PER_WEIGHT = {
    "bf16": 16.0005,
    "q8_0": 8.5008,
    "q6_K": 6.5633,
    "q5_K_M": 5.7036,
    "q4_K_M": 4.8944,
    "q4_K_S": 4.6672,
    "q3_K_M": 3.9960,
    "q2_K": 3.1593,
}
# What each type costs in quality: the rise in perplexity llama.cpp measured on
# Llama-3-8B, from llama-quantize's own list of types (QUANT_OPTIONS in
# tools/quantize/quantize.cpp, printed by `llama-quantize --help`; that README's tables
# give sizes and speeds only), same llama.cpp. q2_K's +3.52 is twenty times q4_K_M's.
PPL_INCREASE = {"q8_0": 0.0026, "q6_K": 0.0217, "q5_K_M": 0.0569, "q4_K_M": 0.1754,
                "q4_K_S": 0.2689, "q3_K_M": 0.6569, "q2_K": 3.5199}
LARGE_LOSS_PPL = 1.0           # above this, a type is called a large loss of quality
KV_BYTES = 2                   # llama-server's default KV cache type, f16
RUNTIME_GIB = 1.0              # CUDA context and compute buffers, roughly
CARDS_GB = (16, 24, 32, 48, 80)
WRITER_CARD_GB = 32            # one RTX 5090
WRITER_CARD = "RTX 5090"


@dataclass(frozen=True)
class Fit:
    """One type's estimate: the file, the KV cache and the total, in bytes."""
    type: str
    file_bytes: int
    kv_bytes: int
    total_bytes: int
    layers: int

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    def fits(self, card_gb: float) -> bool:
        return self.total_bytes <= card_gb * GIB


@dataclass(frozen=True)
class FitTable:
    parameters: int
    context: int
    rows: list

    def row(self, gguf_type: str) -> Fit:
        return next(r for r in self.rows if r.type == gguf_type)

    def largest_fitting(self, card_gb: float = WRITER_CARD_GB) -> Fit | None:
        """The type with the most bits per weight that fits one card of card_gb."""
        return next((r for r in self.rows if r.fits(card_gb)), None)


def kv_cache_bytes(shape: dict, context: int) -> int:
    heads = shape["num_attention_heads"]
    kv_heads = shape.get("num_key_value_heads") or heads
    head_dim = shape.get("head_dim") or shape["hidden_size"] // heads
    return shape["num_hidden_layers"] * 2 * kv_heads * head_dim * context * KV_BYTES


def file_bytes(parameters: int, gguf_type: str) -> int:
    return round(parameters * BITS_PER_WEIGHT[gguf_type] / 8)


def fit_table(shape: dict, context: int) -> FitTable:
    """Every type of BITS_PER_WEIGHT, largest first, for a model of this config.json."""
    params = parameter_count(shape)
    kv = kv_cache_bytes(shape, context)
    rows = []
    for gguf_type in BITS_PER_WEIGHT:
        size = file_bytes(params, gguf_type)
        rows.append(Fit(gguf_type, size, kv, size + kv + round(RUNTIME_GIB * GIB), shape["num_hidden_layers"]))
    return FitTable(params, context, rows)


def model_table(model_dir: Path, context: int) -> FitTable | None:
    """The table for a merged folder, from its config.json; None when there is none or
    it is not a Llama-style decoder's (no hidden_size, intermediate_size, ...)."""
    try:
        return fit_table(json.loads((model_dir / "config.json").read_text(encoding="utf-8")), context)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


def format_table(table: FitTable, markdown: bool = False) -> str:
    """The table, the writer's card's largest type starred: a Markdown table, and with
    markdown=True set apart by blank lines, as a Markdown file (SERVE.md) needs it."""
    best = table.largest_fitting()
    kv = table.rows[0].kv_bytes / GIB
    count = f"{table.parameters / 1e9:.2f}B" if table.parameters >= 1e9 else f"{table.parameters / 1e6:.0f}M"
    rows = ["| type | bits/weight | file GiB | total GiB | " + " | ".join(f"{c} GB" for c in CARDS_GB) + " |",
            "|---" * (4 + len(CARDS_GB)) + "|"]
    for r in table.rows:
        name = r.type + (" *" if r is best else "")
        cards = " | ".join("fits" if r.fits(c) else "-" for c in CARDS_GB)
        rows.append(f"| {name} | {BITS_PER_WEIGHT[r.type]:.2f} | {r.file_bytes / GIB:.2f} | "
                    f"{r.total_gib:.2f} | {cards} |")
    note = (f"* the largest type that fits one {WRITER_CARD_GB} GB card ({WRITER_CARD})" if best else
            f"no type fits one {WRITER_CARD_GB} GB card ({WRITER_CARD}): see -ngl below")
    if best and large_loss(best.type):
        note += ", at a large loss of quality: see the warning"
    head = (f"{count} parameters, {table.context}-token context: "
            f"KV cache {kv:.2f} GiB (f16), runtime ~{RUNTIME_GIB:g} GiB")
    if markdown:
        return "\n\n".join([head, "\n".join(rows), note.replace("* ", "\\* ", 1)])
    return "\n".join([head, *rows, note])


def gpu_layers(row: Fit, card_gb: float = WRITER_CARD_GB) -> int:
    """About how many layers (with their KV cache) one card holds: llama-server's -ngl."""
    per_layer = (row.file_bytes + row.kv_bytes) / row.layers
    return max(0, min(row.layers, floor((card_gb - RUNTIME_GIB) * GIB / per_layer)))


def cards_for(row: Fit) -> tuple[int | None, int | None]:
    """The smallest card of CARDS_GB that holds row, and the smallest of which two do
    (each holds its share of the layers, and its own runtime); None where none does."""
    one = next((c for c in CARDS_GB if row.fits(c)), None)
    two = next((c for c in CARDS_GB if row.total_bytes + RUNTIME_GIB * GIB <= 2 * c * GIB), None)
    return one, two


def large_loss(gguf_type: str) -> bool:
    """Whether llama.cpp's measure puts gguf_type's loss of quality above LARGE_LOSS_PPL."""
    return PPL_INCREASE.get(gguf_type, 0.0) > LARGE_LOSS_PPL


def server_layers(table: FitTable, gguf_type: str) -> int | None:
    """llama-server's -ngl for gguf_type on one RTX 5090: None when every layer fits
    (-ngl 99), else the estimated count (gpu_layers)."""
    row = table.row(gguf_type)
    return None if row.fits(WRITER_CARD_GB) else gpu_layers(row)


def _quality_warning(table: FitTable, lossy: Fit) -> str:
    """lossy fits one RTX 5090 but loses much quality: say so, and what keeps quality."""
    q4 = table.row("q4_K_M")
    if q4.fits(WRITER_CARD_GB):
        keep = f"--gguf q4_K_M or a larger type, up to {table.largest_fitting().type}"
    else:
        one, two = cards_for(q4)
        cards = " or ".join(c for c in (one and f"one {one} GB card", two and f"two {two} GB cards") if c)
        keep = (f"q4_K_M with -ngl {gpu_layers(q4)} (slower), " + (f"{cards}, " if cards else "")
                + "or the 8B, which fits unquantised")
    return (f"{lossy.type} fits one {WRITER_CARD} (~{lossy.total_gib:.1f} GiB) but loses much quality "
            f"(llama.cpp: +{PPL_INCREASE[lossy.type]:.2f} perplexity on Llama-3-8B; q4_K_M "
            f"+{PPL_INCREASE['q4_K_M']:.2f}), and stage 4 judged the unquantised weights. "
            f"To keep quality: {keep}.")


def advice(table: FitTable, gguf_type: str) -> list[str]:
    """Nothing when gguf_type fits one RTX 5090 at little loss of quality. Otherwise
    what does fit: a bigger card or two, a smaller type, or part of the model in CPU RAM
    (llama-server -ngl); and, where that smaller type is q2_K, its loss of quality."""
    row = table.row(gguf_type)
    if row.fits(WRITER_CARD_GB):
        return [_quality_warning(table, row)] if large_loss(gguf_type) else []
    one, two = cards_for(row)
    where = []
    if one:
        where.append(f"one {one} GB card")
    if two and (not one or two < one):
        where.append(f"two {two} GB cards (llama-server spreads the layers over every GPU it sees)")
    lines = [f"{gguf_type} needs ~{row.total_gib:.1f} GiB (estimate), more than one {WRITER_CARD_GB} GB "
             f"{WRITER_CARD} holds." + (f" It fits {', or '.join(where)}." if where else
                                        f" No one card of {CARDS_GB[-1]} GB or less holds it.")]
    best = table.largest_fitting()
    ngl = gpu_layers(row)
    offload = (f"keep {gguf_type} with part of the model in CPU RAM: llama-server -ngl {ngl} "
               f"(about {ngl} of {row.layers} layers on the GPU; slower)")
    if best and not large_loss(best.type):
        lines.append(f"On one {WRITER_CARD}: --backend llamacpp --gguf {best.type} "
                     f"(~{best.total_gib:.1f} GiB; the largest type that fits), or {offload}.")
    else:
        lines.append(f"On one {WRITER_CARD}: {offload}.")
    if best and large_loss(best.type):
        lines.append(_quality_warning(table, best))
    return lines
