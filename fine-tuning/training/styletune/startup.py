"""What every process of the pipeline sets up before anything heavy is imported:
the stage scripts through cli.run_main, Axolotl's processes through
fine-tuning/training/startup/sitecustomize.py (2_train_lora.sh puts it on PYTHONPATH).

- every tracker off (privacy.py);
- no code fetched from a model hub: on a CPU with AVX512-BF16, importing
  bitsandbytes 0.50 tries to download a kernel (`kernels-community/
  quantization-bitsandbytes`) and run it. That is refused; bitsandbytes then
  uses the kernel it ships, and the pipeline keeps 4-bit layers off that path anyway (train/bnb_cpu.py);
- warnings known to be harmless are hidden, each with the reason below, so what
  is left on screen deserves a look;
- STYLETUNE_BNB_CPU_PATH=plain hides AVX512-BF16 from bitsandbytes, as on a CPU
  without it: to reproduce another machine's run (the tests run both paths).
"""
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import warnings

from styletune.privacy import disable_telemetry

PLAIN_PATH_ENV = "STYLETUNE_BNB_CPU_PATH"

# (logger, message pattern, why it is harmless). Python warnings are matched on their text.
KNOWN_HARMLESS = [
    ("torchao", r"Failed to load .*torchao/_C_",
     "torchao's CUDA-only extensions (mxfp8, cutlass) do not load on this build; nothing here calls them"),
    ("torch.utils._pytree", r"is an Enum subclass and is now natively supported",
     "a deprecation notice to torchao's authors about how it registers two enums"),
    ("bitsandbytes.backends.cpu.ops", r"Failed to load CPU gemm_4bit_forward from kernels-community",
     "the hub kernel is refused on purpose (see above); bitsandbytes falls back to its own"),
    ("py.warnings", r"Skipping publisher trust check for 'kernels-community/",
     "the same refused hub kernel, seen from the kernels package"),
]


class _DropKnown(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record) -> bool:
        return not self.pattern.search(record.getMessage())


def hide_known_warnings() -> None:
    for logger, pattern, _why in KNOWN_HARMLESS:
        logging.getLogger(logger).addFilter(_DropKnown(pattern))
        if logger == "py.warnings":  # also when warnings are printed, not logged
            warnings.filterwarnings("ignore", message=".*" + pattern)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `patch(module)` right after `name` is imported. A find_spec that is only
    a lookup (transformers asks whether a package exists) changes nothing."""

    def __init__(self, name: str, patch):
        self.name, self.patch = name, patch

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            self.patch(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_module
        return spec


def after_import(name: str, patch) -> None:
    if name in sys.modules:
        patch(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, patch))


def _refuse_hub_kernels(kernels_module) -> None:
    def get_kernel(repo_id, *args, **kwargs):
        raise RuntimeError(f"styletune does not fetch code from a hub ({repo_id})")
    kernels_module.get_kernel = get_kernel


def _hide_avx512bf16(functional) -> None:
    # bitsandbytes' cpu ops and nn.modules import this name after functional has run
    functional.has_avx512bf16 = lambda: False


def setup_process() -> None:
    """Call first, before torch, transformers or bitsandbytes are imported."""
    disable_telemetry()
    hide_known_warnings()
    after_import("kernels", _refuse_hub_kernels)
    if os.environ.get(PLAIN_PATH_ENV) == "plain":
        after_import("bitsandbytes.functional", _hide_avx512bf16)
