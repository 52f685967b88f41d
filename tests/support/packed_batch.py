"""Axolotl's own trainer, built from a config, asked for its first training batch;
the model it loaded scores that batch packed and each packed example alone.
Run in a process of its own (Axolotl patches transformers when it loads a model):

    python tests/support/packed_batch.py AXOLOTL_YAML OUT_JSON

OUT_JSON holds what tests/test_packing.py checks: the batch's keys, where its
examples start, whether each example's labels are its own row's labels (or it is
the padding after the last one), and how
far each example's logits move between alone and packed, beside how far they
move when the packed examples are allowed to see each other; and how many batches
an epoch holds (what stage 2's plan counts steps from).
"""
import json
import sys


def segments(position_ids):
    """[(start, end)] of each packed example: position_ids restart at 0."""
    starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(position_ids)]
    return list(zip(starts, starts[1:]))


def main(config_path, out_path):
    import torch
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_datasets
    from axolotl.train import setup_model_and_trainer

    cfg = load_cfg(config_path)
    meta = load_datasets(cfg=cfg, cli_args=TrainerCliArgs())
    trainer, model, _, _, _ = setup_model_and_trainer(cfg, meta)
    loader = trainer.get_train_dataloader()
    batch = next(iter(loader))
    rows = {tuple(r["input_ids"]): r["labels"] for r in meta.train_dataset}
    ids, labels, positions = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        packed = model(input_ids=ids[None].to(device), position_ids=positions[None].to(device)).logits[0]
        # the same tokens with one mask over the whole row: every example sees those before it
        mixed = model(input_ids=ids[None].to(device), position_ids=positions[None].to(device),
                      attention_mask=torch.ones_like(ids)[None].to(device)).logits[0]
        found = []
        for a, b in segments(positions.tolist()):
            alone = model(input_ids=ids[None, a:b].to(device)).logits[0]
            row_labels = rows.get(tuple(ids[a:b].tolist()))
            found.append({
                "start": a, "end": b,
                "own_row_labels": row_labels == labels[a:b].tolist(),
                # what pad_to_sequence_len adds after the last example: no row, no labels
                "padding": row_labels is None and bool((labels[a:b] == -100).all()),
                "first_label": int(labels[a]),
                "packed_vs_alone": float((packed[a:b] - alone).abs().max()),
                "mixed_vs_alone": float((mixed[a:b] - alone).abs().max()),
            })
    result = {"keys": sorted(batch.keys()), "tokens": int(ids.numel()), "examples": found,
              "sequence_len": int(cfg.sequence_len),
              "rows_in_dataset": len(meta.train_dataset), "batches_per_epoch": len(loader)}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
