"""An Axolotl plugin (config key `plugins:`) for QLoRA on a CPU: every 4-bit layer
stays on bitsandbytes' trainable path, also after an evaluation (see bnb_cpu).

Axolotl imports it by name, so `styletune` must be importable in Axolotl's
process: 2_train_lora.sh puts fine-tuning/training on PYTHONPATH.
"""
import logging

from axolotl.integrations.base import BasePlugin

from styletune.train.bnb_cpu import fused_cpu_path_available, keep_4bit_layers_trainable

LOG = logging.getLogger(__name__)


class KeepQLoRATrainableOnCPU(BasePlugin):
    """Runs after Axolotl builds the model, before the adapter and the trainer."""

    def post_model_build(self, cfg, model):
        layers = keep_4bit_layers_trainable(model)
        if layers and fused_cpu_path_available():
            LOG.info("styletune: %d 4-bit layers kept off bitsandbytes' fused AVX512-BF16 "
                     "inference path (it has no backward)", layers)
