import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=25, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Give every parameter (including zero-initialised output layers) random values, so that
    a test of an identity cannot pass because the network outputs zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


@pytest.fixture
def one_thread():
    """Small models on a shared CPU: one intra-op thread is several times faster than two (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCTM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
