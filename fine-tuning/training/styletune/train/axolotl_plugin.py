"""Axolotl plugins (config key `plugins:`).

TokenMeanLoss, in every config: a step's loss is the mean over every labelled token
of its rows, as transformers (4.46 and later) computes it under gradient
accumulation. Axolotl 0.19 turns that off for every model whose forward() takes
**kwargs, Llama included (core/trainers/base.py: it looks for a parameter named
num_items_in_batch, which reaches the loss through **kwargs; axolotl PR #3982), and
each row then weighs the same whatever its length: with the main config's four rows
a step, a 24-word join drill would weigh as much as a 2,000-token example, and the
drills (four rows in five before the scene openings, two in three now) would carry
most of a step that holds an example. The plugin gives the decision back to
transformers' own rule. (Across steps the rule is silent: a step of drills and
scene openings alone, about half of them, still moves the adapter about as far as
one of prose; docs/stages.md says what that costs.)

It weighs the validation loss the same way. The Trainer evaluates one row at a time
(Axolotl's eval batch is micro_batch_size, 1) and reports the mean of the rows'
means (trainer.py, evaluation_loop), so a 100-token scene opening would count as
much as a 2,000-token example in the figure that picks the checkpoint
(load_best_model_at_end, stage 3's choice) while stage 4 weighs every token alike.
Each row's loss is divided by the validation set's mean labelled tokens per row
instead of its own count: the mean over rows is then the mean over tokens.

QLoRAOnCPU, for QLoRA on a CPU, used by the rehearsal config:

- every 4-bit layer stays on bitsandbytes' trainable path, also after an
  evaluation (see bnb_cpu);
- with several CPU processes (2_train_lora.sh --gpus N), each process's model is
  placed on the CPU. Axolotl 0.19 pins each process of a distributed run to the
  accelerator numbered LOCAL_RANK (utils/config/__init__.py, normalize_config:
  `device_map = {"": LOCAL_RANK}`), and a machine with no GPU has none, so
  loading would fail with "Cannot access accelerator device when none is available".
  A resumed run of several CPU processes then meets a second snag: transformers
  5.16 (trainer.py, _load_optimizer_and_scheduler) loads the optimiser state with
  map_location = the process's device, "cpu:0", a location torch.load cannot
  restore. The plugin teaches torch.load that "cpu:N" is the CPU, through torch's
  own hook for storage locations (torch.serialization.register_package).

Axolotl imports it by name in every training process: `make install` installs the
styletune package into the environment Axolotl runs in.
"""
import logging
import re

import torch
from axolotl.integrations.base import BasePlugin

from styletune.train.bnb_cpu import fused_cpu_path_available, keep_4bit_layers_trainable

# Under Axolotl's logger, so its handlers print these lines in the training log.
LOG = logging.getLogger("axolotl.integrations.styletune")


def place_on_cpu_when_distributed(cfg) -> bool:
    """On a machine without a GPU, a distributed run's model goes to the CPU."""
    if torch.cuda.is_available() or cfg.world_size in (None, 1):
        return False
    cfg.device_map = "cpu"
    torch.serialization.register_package(100, _no_tag, _restore_indexed_cpu)
    return True


def _no_tag(_storage):
    return None       # saving is left to torch's own taggers


def _restore_indexed_cpu(storage, location: str):
    """torch.load's map_location "cpu:0" (a CPU process's device) means the CPU."""
    return storage if re.fullmatch(r"cpu:\d+", location) else None


class QLoRAOnCPU(BasePlugin):

    def load_datasets(self, cfg, preprocess=False):
        # The one hook Axolotl calls in every process after it has settled the
        # config (normalize_config) and before it loads the model (cli/train.py);
        # returning None leaves the data to Axolotl's own loading.
        if not preprocess and place_on_cpu_when_distributed(cfg):
            LOG.info("styletune: process %s of %s loads its model on the CPU", cfg.local_rank,
                     cfg.world_size)
        return None

    def post_model_build(self, cfg, model):
        """After Axolotl builds the model, before the adapter and the trainer."""
        layers = keep_4bit_layers_trainable(model)
        if layers and fused_cpu_path_available():
            LOG.info("styletune: %d 4-bit layers kept off bitsandbytes' fused AVX512-BF16 "
                     "inference path (it has no backward)", layers)


def loss_takes_token_count(model) -> bool:
    """transformers' own rule (Trainer.__init__, model introspection): a model whose
    forward() takes **kwargs hands num_items_in_batch to its loss function."""
    import inspect

    from transformers.trainer_utils import unwrap_peft_model
    inner = unwrap_peft_model(model)
    if hasattr(inner, "accepts_loss_kwargs"):
        return bool(inner.accepts_loss_kwargs)
    return any(p.kind == inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(inner.forward).parameters.values())


def labelled_tokens_per_row(dataset) -> float:
    """The mean count of tokens a row's loss covers: its labels after the first (a
    causal model's loss predicts each token from the ones before it)."""
    counts = [sum(label != -100 for label in labels[1:]) for labels in dataset["labels"]]
    return sum(counts) / max(len(counts), 1)


def weigh_validation_by_tokens(trainer) -> float:
    """Every validation token weighs alike in eval_loss (see the module's docstring):
    the count the Trainer's evaluation hands compute_loss, each batch's own labelled
    tokens, becomes its rows times the set's mean."""
    per_row = labelled_tokens_per_row(trainer.eval_dataset)
    # Counts are summed over the processes, as the Trainer sums them (it then
    # multiplies each process's loss by their number).
    processes = trainer.accelerator.num_processes if trainer.args.average_tokens_across_devices else 1
    compute_loss = trainer.compute_loss

    def compute_loss_per_token(model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training and "labels" in inputs:
            num_items_in_batch = torch.tensor(per_row * len(inputs["labels"]) * processes)
        return compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    trainer.compute_loss = compute_loss_per_token
    return per_row


class TokenMeanLoss(BasePlugin):

    def post_trainer_create(self, cfg, trainer):
        """After Axolotl builds the trainer, before training starts."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        if not trainer.model_accepts_loss_kwargs and loss_takes_token_count(model):
            trainer.model_accepts_loss_kwargs = True
            LOG.info("styletune: each step's loss averages over all its labelled tokens "
                     "(Axolotl had it average each row apart)")
        # Packed batches hold several rows in one (each batch's own count is then
        # close to the mean already); the count per row is for rows apart.
        packed = bool(cfg and (cfg.sample_packing if cfg.eval_sample_packing is None else cfg.eval_sample_packing))
        if trainer.model_accepts_loss_kwargs and trainer.eval_dataset is not None and not packed:
            per_row = weigh_validation_by_tokens(trainer)
            LOG.info("styletune: eval_loss averages over all validation tokens (%.0f a row "
                     "on average), not over rows", per_row)
