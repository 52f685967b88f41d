"""The GPU benchmark's packing profile keeps every row of stage 1 apart: Axolotl's own
trainer, built from the profile (sample packing with the main config's SDPA
attention), gives a first batch in which several rows share one sequence, and each
of them
- sees only its own tokens: its logits packed equal its logits alone, while the same
  row with one mask over the whole sequence (packing without isolation) moves them;
- keeps its own labels, the continuation only.
What packing does change is the recipe, not the rows: a step holds several rows, so
an epoch has several times fewer optimiser updates, and a join drill's tokens share
a step's loss with the examples' instead of with a few other drills. Only a real run
(validation loss, stage 4's Joins) can judge that; the GPU bench's model is random.
Stage 2's plan counts the sequences an epoch holds as Axolotl packs them, at one
and at two sequences a micro-batch.
A tiny random Llama with SmolLM2's tokenizer; Axolotl in a process of its own."""
import json
import sys
from pathlib import Path

import pytest
from conftest import FT, build_tiny_base, load_script, run_axolotl, write_config
from styletune.config import load_config
from styletune.data.prepare import planned_outputs, prepare_data
from styletune.fileio import write_outputs
from styletune.train import gpu_plan, preflight

pytestmark = pytest.mark.slow

BENCH = load_script(FT / "benchmarks" / "bench_gpu_training.py")
HELPER = Path(__file__).parent / "support" / "packed_batch.py"


@pytest.fixture(scope="module", params=[1, 2], ids=["micro1", "micro2"])
def packed(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packing")
    build_tiny_base(tmp / "model")
    cfg = load_config(write_config(tmp, base_model=str(tmp / "model"), micro_batch_size=request.param,
                                   **BENCH.PROFILES["packing"]))
    write_outputs(planned_outputs(prepare_data(cfg)), force=False)
    network_attempts = run_axolotl(cfg, tmp, lambda axo_cfg: [sys.executable, str(HELPER), str(axo_cfg),
                                                              str(tmp / "batch.json")])
    return json.loads((tmp / "batch.json").read_text()), network_attempts, cfg


def test_the_profile_packs_several_rows_into_one_sequence(packed):
    batch = packed[0]
    rows = [e for e in batch["examples"] if not e["padding"]]
    assert len(rows) >= 3
    assert batch["tokens"] <= batch["sequence_len"]
    # the mask is dropped: position_ids, restarting at each row, keep the rows apart
    assert "attention_mask" not in batch["keys"] and "position_ids" in batch["keys"]
    # padding, if any, only after the last row
    assert all(not e["padding"] for e in batch["examples"][:len(rows)])


def test_each_packed_row_sees_only_its_own_tokens(packed):
    batch = packed[0]
    later = [e for e in batch["examples"][1:] if not e["padding"]]
    assert later
    for e in later:
        assert e["packed_vs_alone"] < 1e-4, e
        # the check can fail: one mask over the sequence lets a row see the rows before it
        assert e["mixed_vs_alone"] > 1e-2, e


def test_each_packed_row_keeps_its_own_labels(packed):
    """Its own row's labels, position by position; the first is a prompt token's, so
    the row before it is never trained to predict it."""
    batch = packed[0]
    for e in batch["examples"]:
        assert e["own_row_labels"] or e["padding"], e
        assert e["first_label"] == -100, e


def test_the_training_plan_counts_the_packed_sequences_axolotl_trains_on(packed):
    """Stage 2's plan (steps, time, memory) counts sequences as Axolotl packs them."""
    batch, _, cfg = packed
    manifest = preflight.check_data(cfg)
    rows = ([e for e in manifest["examples"] if e["split"] == "train"] + manifest["join_drills"]
            + manifest["scene_openings"])
    planned = gpu_plan.sequences([e["total_tokens"] for e in rows], cfg.axolotl)
    assert batch["rows_in_dataset"] == len(rows)
    assert sum(planned) == sum(e["total_tokens"] for e in rows)   # every row packed once
    # first-fit decreasing against Axolotl's shuffled first-fit: at most one pack fewer
    assert 0 <= batch["batches_per_epoch"] - gpu_plan.micro_batches(len(planned), cfg.axolotl) <= 1
    assert len(planned) < len(rows) and max(planned) <= cfg.sequence_len
    assert preflight.longest_sequence(cfg, manifest) == cfg.sequence_len


def test_no_network_attempted(packed):
    assert packed[1] == ""
