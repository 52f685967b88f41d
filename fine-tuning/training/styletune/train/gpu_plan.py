"""How a QLoRA run spreads over GPUs: the strategy the config asks Axolotl for,
the memory each GPU and the CPU need, the time, and the launch arguments.

Every figure here is an estimate from the model's shape, not a measurement; the
preflight and docs/gpus.md label them so. `fine-tuning/benchmarks/plan_gpus.py`
prints the table for Llama 3.1 8B and 70B.

Memory per GPU, in the terms of a QLoRA run with gradient checkpointing:
  weights      4-bit linear layers (NF4 with double quantisation, ~0.56 bytes each
               with their scales) plus 16-bit embeddings and lm_head
               (bitsandbytes leaves them unquantised)
  LoRA state   the adapter's fp32 weights, gradients and two AdamW moments (16 bytes
               per LoRA parameter)
  activations  fp32 logits and their gradient for the longest sequence (the longest
               example, or with sample packing a full sequence_len; with Liger's
               fused linear cross-entropy, one chunk of them in bf16, by Liger's own
               chunk rule, and the hidden states' gradient), and 4 bytes
               per layer, token and hidden unit: the bf16 input gradient
               checkpointing keeps of each layer, twice over, as headroom for the
               layer being recomputed (calibrated below)
  overhead     CUDA context and allocator slack, 1.5 GiB
DDP keeps everything on every GPU. FSDP keeps 1/N of the weights and the LoRA
state, plus the two layers it has gathered (the running one and the next),
and the activations stay whole on each GPU. With offload_params the sharded
weights live in CPU RAM instead.

FSDP adds its own buffers (the flat parameters it gathers into and the gradient
reduce buckets), FSDP_OVERHEAD_GIB, calibrated on the one FSDP run measured.

Calibration (MEASURED, bench_gpu_training.py on an NVIDIA H200, 2026-12-04, the 8B
shape with ~2,400-token examples): the main config on one GPU is planned at 11.2 GiB
and peaked at 10.3; multi_gpu.yaml in one process is planned at 13.0 and peaked at
13.0 (FSDP_OVERHEAD_GIB comes from it). tests/test_distributed.py keeps each plan
within 15% of its measurement. Everything else (FSDP over several GPUs, 70B) is the
same arithmetic, not measured.
"""
import math
from dataclasses import dataclass

from styletune.settings import AxolotlKeys

GIB = 2 ** 30
NF4_BYTES = 0.56
LORA_STATE_BYTES = 16
OVERHEAD_GIB = 1.5
FSDP_OVERHEAD_GIB = 1.6
# What bench_gpu_training.py measured, per (config file, GPUs), for the 8B shape with
# examples of MEASURED_TOKENS tokens: the plan prints it beside its estimate.
MEASURED_DEVICE, MEASURED_DATE = "NVIDIA H200", "2026-12-04"
MEASURED_ON = f"{MEASURED_DEVICE}, {MEASURED_DATE}, bench_gpu_training.py"
MEASURED_TOKENS = 2400
MEASURED = {("qlora_style_transfer.yaml", 1): {"peak_gib": 10.3, "tokens_per_second": 4450},
            ("multi_gpu.yaml", 1): {"peak_gib": 13.0, "tokens_per_second": 2239}}
# One safetensors file of the checkpoint, read at a time by the sharded loader.
CHECKPOINT_SHARD_GIB = 5.0
# Training throughput of the 8B on one RTX 5090, a planning figure: an H200 ran
# ~4,400 tokens/s (MEASURED), and a 5090 has about a quarter of its
# dense bf16 throughput on the spec sheets, so ~1,000-1,500 (docs/benchmarks.md). Other sizes
# scale by parameter count; N GPUs multiply it by N, an upper bound, since this
# figure does not count the time FSDP spends gathering weights.
CUDA_TOKENS_PER_SECOND_8B = 1200
# A long chunk's example (stage 0 aims at ~2,250 tokens, up to sequence_len), for docs/gpus.md's table.
TABLE_EXAMPLE_TOKENS = 3000
# Measured: the CPU rehearsal (SmolLM2-135M, QLoRA, 2 cores), 79 rows of 25,683 tokens
# in 354 s (Axolotl's train_runtime, 2026-12-06). Several CPU processes share the same
# cores (cpu_threads splits them), so the figure does not grow with the process count.
CPU_TOKENS_PER_SECOND = 70

# Llama 3.1's shapes (config.json of meta-llama/Llama-3.1-{8B,70B}-Instruct), for
# docs/gpus.md's table and the tests; the preflight reads the real config.json.
LLAMA31_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
              "tie_word_embeddings": False}
LLAMA31_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
               "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
               "tie_word_embeddings": False}

# So the preflight can price a run before a 141 GB download, not after it.
KNOWN_SHAPES = {"meta-llama/Llama-3.1-8B-Instruct": LLAMA31_8B,
                "meta-llama/Llama-3.1-70B-Instruct": LLAMA31_70B}


def shape_of(cfg) -> dict | None:
    """The base model's config.json when local or cached, else Llama 3.1's known shape."""
    from styletune.train.model_size import model_shape
    return model_shape(cfg) or KNOWN_SHAPES.get(cfg.axolotl.base_model)


def strategy(keys: AxolotlKeys, processes: int) -> str:
    """What Axolotl will do with this config (cfg.axolotl) and this many processes."""
    if keys.fsdp_config or keys.fsdp:
        version = keys.fsdp_version or (keys.fsdp_config or {}).get("fsdp_version") or 1
        return f"fsdp{version}"
    if keys.deepspeed:
        return "deepspeed"
    return "ddp" if processes > 1 else "single"


def lora_parameters(shape: dict, rank: int) -> int:
    """LoRA weights on every linear layer of a Llama decoder (lora_target_linear)."""
    h, inter = shape["hidden_size"], shape["intermediate_size"]
    heads = shape["num_attention_heads"]
    head_dim = shape.get("head_dim") or h // heads
    q, kv = heads * head_dim, (shape.get("num_key_value_heads") or heads) * head_dim
    widths = [(h, q), (h, kv), (h, kv), (q, h), (h, inter), (h, inter), (inter, h)]
    return shape["num_hidden_layers"] * rank * sum(a + b for a, b in widths)


@dataclass
class MemoryPlan:
    strategy: str
    processes: int
    per_gpu_gib: float        # the most one GPU holds during training
    load_peak_gib: float      # the most one GPU holds while the model loads
    cpu_ram_gib: float        # CPU RAM the run needs beyond the usual
    weights_gib: float        # the whole 4-bit model

    @property
    def need_per_gpu_gib(self) -> float:
        return max(self.per_gpu_gib, self.load_peak_gib)


def sequences(row_tokens: list[int], keys: AxolotlKeys) -> list[int]:
    """The token count of each sequence an epoch trains on: one per row; with sample
    packing, rows packed into sequences of up to sequence_len. Axolotl's multipack
    sampler packs first-fit in shuffled order, keeping the fewest packs of four
    shuffles; first-fit decreasing here is the estimate (tests/test_packing.py: at
    most one pack fewer than Axolotl's)."""
    if not keys.sample_packing:
        return list(row_tokens)
    packs = []
    for n in sorted(row_tokens, reverse=True):
        fit = next((i for i, used in enumerate(packs) if used + n <= keys.sequence_len), None)
        if fit is None:
            packs.append(n)
        else:
            packs[fit] += n
    return packs


def micro_batches(sequence_count: int, keys: AxolotlKeys) -> int:
    """Micro-batches an epoch holds: rows in micro_batch_size groups, the last one
    short; with sample packing (and SDPA, the configs' attention), packs in groups of
    micro_batch_size, an incomplete last group dropped, as Axolotl's sampler does."""
    if keys.sample_packing:
        return max(1, sequence_count // keys.micro_batch_size)
    return math.ceil(sequence_count / keys.micro_batch_size)


def longest_sequence(longest_row: int, keys: AxolotlKeys) -> int:
    """The tokens of the longest sequence a step holds: without sample packing a batch
    is padded only to its longest row; with it, a sequence fills up to sequence_len."""
    return keys.sequence_len if keys.sample_packing else longest_row


def checkpointed(keys: AxolotlKeys) -> bool:
    """Whether the plan's activation terms hold: they assume gradient checkpointing, by
    transformers or by FSDP (the multi-GPU overlays)."""
    return bool(keys.gradient_checkpointing or (keys.fsdp_config or {}).get("activation_checkpointing"))


# said beside a plan whose terms do not hold
UNCHECKPOINTED = "; the plan assumes gradient checkpointing, which this config turns off: expect more"


LIGER_PLUGIN = "axolotl.integrations.liger"   # its plugin, by either import path Axolotl takes


def cross_entropy_bytes(tokens: int, hidden: int, vocab: int, keys: AxolotlKeys) -> int:
    """The loss's memory for `tokens` rows of logits: fp32 logits and their gradient;
    with Liger's fused linear cross-entropy (liger_kernel/ops/fused_linear_cross_entropy.py)
    only a chunk of them at a time, in bf16, next_power_of_2(tokens / ceil(vocab /
    hidden)) rows, beside the gradient of the hidden states and the per-token loss."""
    if not (keys.liger_fused_linear_cross_entropy and any(p.startswith(LIGER_PLUGIN) for p in keys.plugins)):
        return tokens * vocab * 8
    chunk = 1 << max(0, math.ceil(tokens / math.ceil(vocab / hidden)) - 1).bit_length()
    return chunk * vocab * 2 + tokens * hidden * 2 + tokens * 4


def memory_plan(shape: dict, keys: AxolotlKeys, processes: int, example_tokens: int) -> MemoryPlan:
    """Per-GPU and CPU memory for this config on `processes` GPUs, for sequences of at
    most `example_tokens` (longest_sequence; see the module docstring)."""
    from styletune.train.model_size import embedding_parameter_count, parameter_count
    params, embeddings = parameter_count(shape), embedding_parameter_count(shape)
    layers, h, vocab = shape["num_hidden_layers"], shape["hidden_size"], shape["vocab_size"]
    weights = ((params - embeddings) * NF4_BYTES + embeddings * 2) / GIB
    layer = (params - embeddings) * NF4_BYTES / layers / GIB
    lora = lora_parameters(shape, keys.lora_r) * LORA_STATE_BYTES / GIB
    rows = example_tokens * keys.micro_batch_size
    activations = (cross_entropy_bytes(rows, h, vocab, keys) + layers * rows * h * 4) / GIB
    how = strategy(keys, processes)
    fsdp = keys.fsdp_config or {}
    if not how.startswith("fsdp"):
        per_gpu = weights + lora + activations + OVERHEAD_GIB
        return MemoryPlan(how, processes, per_gpu, weights + OVERHEAD_GIB, 0.0, weights)
    offload = bool(fsdp.get("offload_params"))
    resident = 2 * layer + (0 if offload else weights / processes)
    per_gpu = resident + lora / processes + activations + OVERHEAD_GIB + FSDP_OVERHEAD_GIB
    # Without cpu_ram_efficient_loading every GPU loads the whole 4-bit model first;
    # with it, process 0 builds it in CPU RAM one checkpoint file at a time.
    efficient = bool(fsdp.get("cpu_ram_efficient_loading"))
    load_peak = (2 * layer if efficient else weights) + OVERHEAD_GIB
    # FULL_STATE_DICT checkpoints gather the whole model in process 0's CPU RAM.
    cpu = weights + (CHECKPOINT_SHARD_GIB if efficient else 0)
    return MemoryPlan(how, processes, per_gpu, load_peak, cpu, weights)


def tokens_per_second(device: str, params: int | None, processes: int) -> float:
    if device == "cpu":
        return CPU_TOKENS_PER_SECOND
    from styletune.train.model_size import parameter_count
    eight_b = parameter_count(LLAMA31_8B)
    per_gpu = CUDA_TOKENS_PER_SECOND_8B * eight_b / (params or eight_b)
    return per_gpu * processes


def accumulation_for(steps: int, processes: int) -> int:
    """Gradient accumulation that keeps the config's global batch on `processes`
    GPUs, each taking its own micro-batch per step: exactly when the GPU count
    divides the batch, else the nearest batch that can be made (halves round up);
    at least 1 step, so more GPUs than the batch make the batch the GPU count."""
    return max(1, (2 * steps + processes) // (2 * processes))


def launch_arguments(processes: int, keys: AxolotlKeys | None = None) -> list[str]:
    """Axolotl's own launcher arguments (`axolotl train CONFIG ...` then these).

    One process without FSDP: Axolotl's default, `accelerate launch`, held to one
    process (on a machine with several GPUs accelerate would otherwise take them all).
    Several processes, or FSDP at any count: `torchrun`, which Axolotl also documents
    (`--launcher torchrun`). transformers refuses FSDP outside distributed training
    ("Using fsdp only works in distributed training."), which `accelerate launch
    --num_processes 1` is not and a one-process torchrun is (measured on an H200,
    2026-12-04). torchrun reads no configuration file, so a writer's old accelerate
    settings cannot change the run, and it starts several CPU processes too: the CPU
    test runs the command a GPU machine gets. `--standalone` finds a free local port
    for the processes to meet on, so two runs never collide."""
    if processes == 1 and not (keys and strategy(keys, processes).startswith("fsdp")):
        return ["--launcher", "accelerate", "--", "--num_processes", "1"]
    return ["--launcher", "torchrun", "--", "--standalone", "--nproc_per_node", str(processes)]


# FSDP in one process against the main config on one GPU, as measured: the preflight
# quotes it when a config with fsdp_config is started on one GPU.
_MAIN, _FSDP = MEASURED[("qlora_style_transfer.yaml", 1)], MEASURED[("multi_gpu.yaml", 1)]
FSDP_ONE_GPU_MEASURED = (f"measured on an {MEASURED_DEVICE} on {MEASURED_DATE} "
                         f"(bench_gpu_training.py, an 8B-shaped model, ~{MEASURED_TOKENS:,}-token "
                         f"examples): the main config {_MAIN['tokens_per_second']:,} tokens/s and "
                         f"{_MAIN['peak_gib']} GiB at peak, FSDP in one process "
                         f"{_FSDP['tokens_per_second']:,} tokens/s and {_FSDP['peak_gib']} GiB")


def measured(config_name: str, shape: dict, processes: int) -> dict | None:
    """The measured row for this config file, GPU count and model shape, if any."""
    return MEASURED.get((config_name, processes)) if shape == LLAMA31_8B else None


def measured_note(config_name: str, shape: dict, processes: int, keys: AxolotlKeys) -> str:
    """ "; measured X GiB at N tokens (device, date)" where a measurement exists."""
    m = measured(config_name, shape, processes)
    if m is None:
        return ""
    plan = memory_plan(shape, keys, processes, MEASURED_TOKENS)
    return (f"; measured {m['peak_gib']:.1f} GiB and {m['tokens_per_second']:,} tokens/s at "
            f"{MEASURED_TOKENS:,}-token examples, planned {plan.per_gpu_gib:.1f} GiB there ({MEASURED_ON})")


def plan_table(shape: dict, keys: AxolotlKeys, example_tokens: int, counts=(1, 2, 4, 8),
               config_name: str = "") -> list[str]:
    """Markdown rows: GPU count, strategy, per-GPU memory, load peak, CPU RAM,
    throughput, and what was measured where a run was (MEASURED)."""
    from styletune.train.model_size import parameter_count
    rows = ["| GPUs | strategy | per GPU, training | per GPU, loading | CPU RAM | tokens/s (5090-class) "
            f"| measured ({MEASURED_ON}, {MEASURED_TOKENS:,}-token examples) |",
            "|---:|---|---:|---:|---:|---:|---|"]
    for n in counts:
        p = memory_plan(shape, keys, n, example_tokens)
        tps = tokens_per_second("cuda", parameter_count(shape), n)
        m = measured(config_name, shape, n)
        seen = (f"{m['peak_gib']:.1f} GiB (planned {memory_plan(shape, keys, n, MEASURED_TOKENS).per_gpu_gib:.1f}), "
                f"{m['tokens_per_second']:,} tokens/s on the H200" if m else "-")
        rows.append(f"| {n} | {p.strategy} | {p.per_gpu_gib:.1f} GiB | {p.load_peak_gib:.1f} GiB | "
                    f"{p.cpu_ram_gib:.0f} GiB | ~{math.floor(tps):,} | {seen} |")
    return rows
