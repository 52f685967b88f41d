"""What every process sets up first (styletune/startup.py): no code fetched from a
hub, and only the known-harmless warnings hidden."""
import logging

import pytest
from styletune import startup


def test_no_kernel_is_fetched_from_a_hub():
    import kernels
    with pytest.raises(RuntimeError, match="does not fetch code from a hub"):
        kernels.get_kernel("kernels-community/quantization-bitsandbytes", version=1)


def test_known_harmless_warnings_are_hidden_and_nothing_else(caplog):
    caplog.set_level(logging.WARNING)
    torchao = logging.getLogger("torchao")
    torchao.warning("Failed to load /venv/site-packages/torchao/_C_mxfp8.so: Could not load this library")
    torchao.warning("Failed to quantize layer 3")
    assert [r.getMessage() for r in caplog.records] == ["Failed to quantize layer 3"]
    assert all(why for _logger, _pattern, why in startup.KNOWN_HARMLESS)
