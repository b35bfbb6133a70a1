"""A local three-node Redis Cluster for these tests (``tests.support.redis_cluster``).

``redis_cluster`` is shared by the module's tests, each under its own key prefix;
a test that kills a node takes ``doomed_cluster``, a cluster of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_unavailable
from tests.support.redis_cluster import (
    LocalRedisCluster,
    cluster_tools_missing,
    local_redis_cluster,
)


def _started(directory: Path) -> Iterator[LocalRedisCluster]:
    missing = cluster_tools_missing()
    if missing is not None:
        service_unavailable("Redis Cluster", missing)
    with local_redis_cluster(directory) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """Three joined cluster nodes on free ports, stopped after the module."""
    yield from _started(tmp_path_factory.mktemp("redis-cluster"))


@pytest.fixture
def doomed_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A cluster of this test's own, which it may kill nodes of."""
    yield from _started(tmp_path / "cluster")
