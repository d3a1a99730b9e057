"""Device mesh and host-to-device batch assembly.

One code path from one CPU to a pod slice: a 1-D mesh over every device with the
batch on axis `data`, the train state replicated, and each process contributing
its own rows of the global batch.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def create_mesh() -> jax.sharding.Mesh:
    """A mesh over all devices of all processes, batch axis `data`."""
    return jax.make_mesh(
        (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def data_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) dimension split over `data`, the rest replicated."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(local_batch: dict, mesh: jax.sharding.Mesh) -> dict:
    """Assembles the global batch from every process's local rows.

    Args:
      local_batch: numpy arrays whose leading dimension is this process's share
        of the global batch (global batch size / process count).
      mesh: the device mesh.

    Returns:
      The same keys as global `jax.Array`s sharded along `data`.
    """
    sharding = data_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )
