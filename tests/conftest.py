"""Shared fixtures: a seeded Generator per test and the hypothesis profiles.

Locally every run draws a fresh base seed (printed in the header; ``--rng-seed N`` replays it) so
that repeated runs explore new inputs. Under CI (``CI`` set) the seed is 0 and hypothesis is
derandomized, so a submission's result does not depend on the draw.
"""

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

_CI = bool(os.environ.get("CI"))

settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if _CI else "dev")


def pytest_addoption(parser):
    parser.addoption("--rng-seed", type=int, default=None,
                     help="base seed of the rng fixture (default: 0 under CI, else random)")


def _base_seed(config):
    seed = config.getoption("--rng-seed")
    if seed is None:
        seed = 0 if _CI else int(np.random.SeedSequence().entropy % 2**32)
        config.option.rng_seed = seed
    return seed


def pytest_report_header(config):
    return f"cnnkit rng fixture base seed: {_base_seed(config)} (replay with --rng-seed)"


@pytest.fixture
def rng(request):
    """A Generator seeded from the base seed and the test's id, so each test gets its own stream."""
    seed = _base_seed(request.config)
    return np.random.default_rng([seed, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory):
    """Decoded-folder caches go to a temporary folder, never to the user's ~/.cache."""
    os.environ["CNNKIT_CACHE"] = str(tmp_path_factory.mktemp("cnnkit-cache"))
    yield
