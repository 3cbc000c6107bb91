"""``normalize_over="world"`` under ``jax.shard_map`` and ``jax.pmap`` on several host devices equals one
device on the whole batch (values and gradients), through ``polyloss_jax.data_parallel_axis``.

The devices are XLA's host platform split in four (``--xla_force_host_platform_device_count``),
which must be set before jax is imported: the comparison runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import polyloss as pl
import polyloss_jax

DEVICES = 4
N = 8
assert len(jax.devices()) == DEVICES, jax.devices()
rng = np.random.default_rng(3)


def boxes(count, size):
    lo = rng.uniform(0.0, 1.0 - size, size=(count, 2))
    wh = rng.uniform(0.1, size, size=(count, 2))
    return np.concatenate([lo, lo + wh], axis=1)


# ground truth padded to 3 boxes, 0 to 3 real boxes per image (padding: label -1)
counts = [0, 1, 3, 2, 1, 0, 2, 3]
gt = np.zeros((N, 3, 4))
labels = np.full((N, 3), -1)
for i, c in enumerate(counts):
    gt[i, :c] = boxes(c, 0.4)
    gt[i, c:] = [0.0, 0.0, 1.0, 1.0]
    labels[i, :c] = rng.integers(1, 4, size=c)
priors = boxes(24, 0.5)
cases = {
    "ssd": (pl.get_recipe("ssd", num_classes=4, normalize_over="world"),
            lambda r, a, g, l: r(a[..., :4], a[..., 4:], jnp.asarray(priors), g, l, validate=False).total,
            rng.normal(size=(N, 24, 8))),
    "yolov1": (pl.get_recipe("yolov1", grid=3, boxes_per_cell=2, num_classes=4, normalize_over="world",
                             validate=False),
               lambda r, a, g, l: r(a, g, jnp.maximum(l - 1, -1)).total,
               0.3 + 0.2 * rng.normal(size=(N, 3, 3, 14))),
}
mesh = jax.make_mesh((DEVICES,), ("batch",))
out = {}
for name, (recipe, call, pred) in cases.items():
    pred, g, l = jnp.asarray(pred), jnp.asarray(gt), jnp.asarray(labels)

    def single(a):
        return call(recipe, a, g, l)

    def per_device(a, g_, l_):
        with polyloss_jax.data_parallel_axis("batch"):
            total = call(recipe, a, g_, l_)
        return jax.lax.pmean(total, "batch")

    sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P("batch"), P("batch"), P("batch")), out_specs=P())
    put = lambda x: jax.device_put(x, NamedSharding(mesh, P("batch")))
    shard_value, shard_grad = jax.jit(jax.value_and_grad(lambda a: sharded(a, put(g), put(l))))(put(pred))
    value, grad = jax.value_and_grad(single)(pred)
    local = jax.shard_map(lambda a, g_, l_: jax.lax.pmean(call(recipe, a, g_, l_), "batch"), mesh=mesh,
                          in_specs=(P("batch"), P("batch"), P("batch")), out_specs=P())(put(pred), put(g), put(l))
    split = lambda x: x.reshape((DEVICES, N // DEVICES) + x.shape[1:])
    pmapped = jax.pmap(per_device, axis_name="batch")(split(pred), split(g), split(l))
    out[name] = {
        "single": float(value),
        "shard_map": float(shard_value),
        "pmap": float(pmapped[0]),
        "local": float(local),
        "grad_diff": float(np.max(np.abs(np.asarray(shard_grad) - np.asarray(grad)))),
        "grad_scale": float(jnp.max(jnp.abs(grad))),
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def results() -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("recipe", ["ssd", "yolov1"])
def test_world_normalisation_on_four_devices_equals_one_device(results: dict, recipe: str) -> None:
    r = results[recipe]
    assert r["shard_map"] == pytest.approx(r["single"], rel=1e-12)
    assert r["pmap"] == pytest.approx(r["single"], rel=1e-12)
    assert r["grad_scale"] > 0
    assert r["grad_diff"] <= 1e-12 * max(1.0, r["grad_scale"])


def test_without_the_axis_each_device_normalises_locally(results: dict) -> None:
    # SSD divides by the positives, spread unevenly over the devices: local normalisation differs from the
    # whole batch (YOLOv1's per-image mean over equal shards does not, so it is not a witness)
    r = results["ssd"]
    assert r["local"] != pytest.approx(r["single"], rel=1e-6)
