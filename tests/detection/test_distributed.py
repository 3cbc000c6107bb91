"""``normalize_over="world"``: data-parallel workers reproduce one process on the whole batch.

Two worker processes (gloo on CPU, loopback only) each compute a recipe on
their part of a batch (an uneven split: 3 and 2 images, one without ground
truth) with predictions made by parameters shared by both (a linear map of
fixed per-image features, as a model under DDP), then average the gradients
and the losses over the workers as DDP does (all-reduce sum, divided by W).
The reference is one process computing the recipe on the concatenated batch
with ``normalize_over="local"``. Faster R-CNN's batch sizes are large enough
that every candidate is sampled, so each image gets the same sample in both.

This file is also the worker: ``python test_distributed.py RANK WORLD OUT.npz``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import polyloss as pl

N_IMAGES = 5
SPLIT = (range(0, 3), range(3, 5))  # worker 0: images 0-2, worker 1: images 3-4
C = 4  # classes, background included
F = 6  # feature size
CASES = ("ssd", "faster_rcnn", "yolov1_batch", "yolov1_sum", "detr", "yolov8", "fcos")
BIG = {"rpn_batch_size": 100_000, "roi_batch_size": 100_000}
V8_BINS = 4
FCOS_ANCHORS = 86  # fcos_anchors(64): 8 x 8 + 4 x 4 + 2 x 2 + 1 + 1


# -- data (numpy, the same in every process) ------------------------------------------
def _boxes(rng: np.random.Generator, count: int, low: float, high: float, size: tuple[float, float]) -> np.ndarray:
    corner = rng.uniform(low, high, size=(count, 2))
    return np.concatenate([corner, corner + rng.uniform(*size, size=(count, 2))], axis=1)


def make_data() -> dict[str, object]:
    rng = np.random.default_rng(20240607)
    counts = [2, 0, 3, 1, 2]
    data: dict[str, object] = {}
    # SSD: 4 x 4 grid of priors in [0, 1], two shapes per cell
    priors = []
    for y in range(4):
        for x in range(4):
            for w, h in ((0.3, 0.3), (0.45, 0.2)):
                cx, cy = (x + 0.5) / 4, (y + 0.5) / 4
                priors.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    data["priors"] = np.array(priors)
    data["ssd_gt"] = [_boxes(rng, c, 0.0, 0.6, (0.2, 0.4)) for c in counts]
    data["ssd_feats"] = rng.normal(size=(N_IMAGES, len(priors), F))
    # Faster R-CNN: anchors on a 5 x 5 grid in [0, 5], three shapes each
    anchors = []
    for y in range(5):
        for x in range(5):
            for w, h in ((2.0, 2.0), (3.0, 1.5), (1.5, 3.0)):
                anchors.append([x + 0.5 - w / 2, y + 0.5 - h / 2, x + 0.5 + w / 2, y + 0.5 + h / 2])
    data["anchors"] = np.array(anchors)
    data["frcnn_gt"] = [_boxes(rng, c, 0.0, 3.0, (1.0, 2.5)) for c in counts]
    data["rpn_feats"] = rng.normal(size=(N_IMAGES, len(anchors), F))
    proposals = []
    for gt in data["frcnn_gt"]:
        jitter = np.concatenate([gt, gt]) + rng.normal(scale=0.3, size=(2 * len(gt), 4))
        extra = _boxes(rng, 8 - len(jitter), 0.0, 4.0, (0.5, 2.0))
        p = np.concatenate([jitter, extra])
        p[:, 2:] = np.maximum(p[:, 2:], p[:, :2] + 0.1)
        proposals.append(p)
    data["proposals"] = np.stack(proposals)  # (N, 8, 4)
    # YOLOv1: S = 3, B = 2, C = 4: 14 channels, image-normalised boxes
    data["yolo_gt"] = [_boxes(rng, c, 0.0, 0.6, (0.1, 0.4)) for c in counts]
    data["yolo_feats"] = rng.normal(size=(N_IMAGES, 3, 3, F))
    data["labels"] = [rng.integers(1, C, size=c) for c in counts]
    params = np.random.default_rng(7)
    data["params"] = {
        "ssd_cls": params.normal(scale=0.5, size=(F, C)),
        "ssd_box": params.normal(scale=0.3, size=(F, 4)),
        "rpn_obj": params.normal(scale=0.5, size=(F,)),
        "rpn_box": params.normal(scale=0.2, size=(F, 4)),
        "roi_cls": params.normal(scale=0.5, size=(8, C)),
        "roi_box": params.normal(scale=0.2, size=(8, 4 * C)),
        "yolo": params.normal(scale=0.3, size=(F, 2 * 5 + C)),
        "detr_cls": params.normal(scale=0.5, size=(F, C)),
        "detr_box": params.normal(scale=0.5, size=(F, 4)),
        "yolov8_distri": params.normal(scale=0.5, size=(F, 4 * V8_BINS)),
        "yolov8_cls": params.normal(scale=0.5, size=(F, C)),
        "fcos_cls": params.normal(scale=0.5, size=(F, C)),
        "fcos_box": params.normal(scale=0.3, size=(F, 4)),
        "fcos_ctr": params.normal(scale=0.5, size=(F,)),
    }
    # DETR: 4 queries per image, C - 1 classes and "no object", the YOLOv1 boxes as cxcywh
    data["detr_feats"] = rng.normal(size=(N_IMAGES, 4, F))
    # YOLOv8: 32 x 32 pixel images, 21 anchors at strides 8, 16, 32, pixel boxes (its own generator)
    v8 = np.random.default_rng(8)
    data["yolov8_gt"] = [_boxes(v8, c, 2.0, 16.0, (6.0, 14.0)) for c in counts]
    data["yolov8_feats"] = v8.normal(size=(N_IMAGES, 21, F))
    # FCOS: 64 x 64 pixel images, 86 anchors on five levels, pixel boxes (its own generator)
    fcos = np.random.default_rng(9)
    data["fcos_gt"] = [_boxes(fcos, c, 2.0, 30.0, (6.0, 34.0)) for c in counts]
    data["fcos_feats"] = fcos.normal(size=(N_IMAGES, FCOS_ANCHORS, F))
    return data


def _cxcywh(xyxy: np.ndarray) -> np.ndarray:
    xyxy = xyxy.reshape(-1, 4)
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _roi_features(torch, boxes):
    """Head features as a function of the box (as RoI pooling would be): (N, R, 8)."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return torch.cat([boxes / 5.0, torch.stack([w / 5.0, h / 5.0, torch.sin(boxes[..., 0]), torch.ones_like(w)],
                                               dim=-1)], dim=-1)


def compute(case: str, rows: range, normalize_over: str) -> tuple[object, dict[str, object]]:
    """``(total, {parameter name: tensor})`` of ``case`` on images ``rows`` (torch float64)."""
    import torch

    data = make_data()
    idx = list(rows)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in data["params"].items()}
    t = torch.tensor
    labels = [t(data["labels"][i]) for i in idx]
    if case == "ssd":
        recipe = pl.get_recipe("ssd", num_classes=C, normalize_over=normalize_over)
        feats = t(data["ssd_feats"][idx])
        result = recipe(feats @ params["ssd_box"], feats @ params["ssd_cls"], t(data["priors"]),
                        [t(data["ssd_gt"][i].reshape(-1, 4)) for i in idx], labels)
        used = ("ssd_cls", "ssd_box")
    elif case == "faster_rcnn":
        recipe = pl.get_recipe("faster_rcnn", num_classes=C, seed=0, normalize_over=normalize_over, **BIG)
        gt = [t(data["frcnn_gt"][i].reshape(-1, 4)) for i in idx]
        feats = t(data["rpn_feats"][idx])
        sampled = recipe.sample_proposals(t(data["proposals"][idx]), gt, labels)
        roi = _roi_features(torch, sampled.boxes)
        result = recipe(t(data["anchors"]), feats @ params["rpn_obj"], feats @ params["rpn_box"], gt, labels,
                        roi @ params["roi_cls"], roi @ params["roi_box"], sampled)
        used = ("rpn_obj", "rpn_box", "roi_cls", "roi_box")
    elif case == "detr":
        recipe = pl.get_recipe("detr", normalize_over=normalize_over)
        feats = t(data["detr_feats"][idx])
        result = recipe(feats @ params["detr_cls"], torch.sigmoid(feats @ params["detr_box"]),
                        [t(_cxcywh(data["yolo_gt"][i])) for i in idx], [lab - 1 for lab in labels])
        used = ("detr_cls", "detr_box")
    elif case == "yolov8":
        from polyloss.detection.yolov8 import make_anchor_points

        recipe = pl.get_recipe("yolov8", num_classes=C, reg_max=V8_BINS, normalize_over=normalize_over)
        points, strides = make_anchor_points(32, 32)
        feats = t(data["yolov8_feats"][idx])
        result = recipe(feats @ params["yolov8_distri"], feats @ params["yolov8_cls"], t(points), t(strides),
                        [t(data["yolov8_gt"][i].reshape(-1, 4)) for i in idx], labels)
        used = ("yolov8_distri", "yolov8_cls")
    elif case == "fcos":
        from polyloss.detection.fcos import fcos_anchors

        recipe = pl.get_recipe("fcos", num_classes=C, normalize_over=normalize_over)
        anchors, counts = fcos_anchors(64)
        feats = t(data["fcos_feats"][idx])
        result = recipe(feats @ params["fcos_cls"], torch.exp(feats @ params["fcos_box"]), feats @ params["fcos_ctr"],
                        t(anchors), counts, [t(data["fcos_gt"][i].reshape(-1, 4)) for i in idx],
                        [lab - 1 for lab in labels])
        used = ("fcos_cls", "fcos_box", "fcos_ctr")
    else:
        normalize = case.split("_")[1]
        recipe = pl.get_recipe("yolov1", grid=3, boxes_per_cell=2, num_classes=C, normalize=normalize,
                               normalize_over=normalize_over)
        pred = 0.3 + t(data["yolo_feats"][idx]) @ params["yolo"]
        result = recipe(pred, [t(data["yolo_gt"][i].reshape(-1, 4)) for i in idx],
                        [lab - 1 for lab in labels])  # YOLOv1 classes start at 0
        used = ("yolo",)
    return result.total, {k: params[k] for k in used}


def single_process(case: str) -> tuple[float, dict[str, np.ndarray]]:
    import torch

    total, params = compute(case, range(N_IMAGES), "local")
    grads = torch.autograd.grad(total, list(params.values()))
    return float(total.detach()), {k: g.numpy() for k, g in zip(params, grads, strict=True)}


# -- worker ---------------------------------------------------------------------------------
def _worker(rank: int, world: int, out: str) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        results: dict[str, np.ndarray] = {}
        for case in CASES:
            for over in ("world", "local"):
                total, params = compute(case, SPLIT[rank], over)
                grads = torch.autograd.grad(total, list(params.values()))
                losses = [torch.zeros((), dtype=torch.float64) for _ in range(world)]
                dist.all_gather(losses, total.detach())
                results[f"{case}/{over}/losses"] = np.array([float(x) for x in losses])
                for name, g in zip(params, grads, strict=True):
                    g = g.clone()
                    dist.all_reduce(g, op=dist.ReduceOp.SUM)  # DDP: all-reduce, then divide by W
                    results[f"{case}/{over}/grad/{name}"] = (g / world).numpy()
        if rank == 0:
            np.savez(out, **results)
        dist.barrier()  # neither rank tears gloo down while the other still has a collective in flight
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    torch = pytest.importorskip("torch")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("ddp") / "result.npz"
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1")
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen([sys.executable, __file__, str(rank), "2", str(out)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        pytest.fail("distributed workers did not finish within 120 s")
    for rank, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"worker {rank} failed (exit {p.returncode}):\n{log}"
    with np.load(out) as f:
        return dict(f)


@pytest.mark.parametrize("case", CASES)
def test_world_workers_reproduce_single_process(two_workers, case):
    loss, grads = single_process(case)
    losses = two_workers[f"{case}/world/losses"]
    loss_diff = abs(losses.mean() - loss)
    grad_diff = max(float(np.max(np.abs(two_workers[f"{case}/world/grad/{k}"] - g))) for k, g in grads.items())
    print(f"{case}: single-process loss {loss:.6f}, worker losses {losses}, "
          f"max |mean loss - loss| = {loss_diff:.3g}, max |averaged grad - grad| = {grad_diff:.3g}")
    assert loss > 0 and all(np.max(np.abs(g)) > 1e-3 for g in grads.values())
    assert losses[0] != losses[1]  # the workers' shares differ: the averaging is what makes them agree
    assert loss_diff <= 1e-12 * max(1.0, abs(loss))
    assert grad_diff <= 1e-12 * max(1.0, max(float(np.max(np.abs(g))) for g in grads.values()))
    # control: with local normalisers the averaged gradient is not the single-process one
    local_diff = max(float(np.max(np.abs(two_workers[f"{case}/local/grad/{k}"] - g))) for k, g in grads.items())
    print(f"{case}: normalize_over='local' max |averaged grad - grad| = {local_diff:.3g}")
    assert local_diff > 1e-3


# -- single process ---------------------------------------------------------------------------
def _recipe_calls(xp):
    """(recipe name, config, call(recipe) -> RecipeResult) on small data in the case's backend."""
    data = make_data()
    a = xp.asarray
    labels = [a(lab) for lab in data["labels"]]
    n = N_IMAGES

    def ssd(recipe):
        rng = np.random.default_rng(3)
        p = data["priors"].shape[0]
        return recipe(a(rng.normal(size=(n, p, 4))), a(rng.normal(size=(n, p, C))), a(data["priors"]),
                      [a(g.reshape(-1, 4)) for g in data["ssd_gt"]], labels)

    def faster_rcnn(recipe):
        rng = np.random.default_rng(3)
        gt = [a(g.reshape(-1, 4)) for g in data["frcnn_gt"]]
        sampled = recipe.sample_proposals(a(data["proposals"]), gt, labels)
        r = int(sampled.labels.shape[1])
        k = data["anchors"].shape[0]
        return recipe(a(data["anchors"]), a(rng.normal(size=(n, k))), a(rng.normal(size=(n, k, 4))), gt, labels,
                      a(rng.normal(size=(n, r, C))), a(rng.normal(size=(n, r, C, 4))), sampled)

    def yolov8(recipe):
        from polyloss.detection.yolov8 import make_anchor_points

        rng = np.random.default_rng(3)
        points, strides = make_anchor_points(32, 32)
        return recipe(a(rng.normal(size=(n, 21, 4 * V8_BINS))), a(rng.normal(size=(n, 21, C))), a(points),
                      a(strides), [a(g.reshape(-1, 4)) for g in data["yolov8_gt"]], labels)

    def yolov1(recipe):
        rng = np.random.default_rng(3)
        pred = a(0.3 + rng.normal(scale=0.2, size=(n, 3, 3, 14)))
        return recipe(pred, [a(g.reshape(-1, 4)) for g in data["yolo_gt"]], [a(lab - 1) for lab in data["labels"]])

    def detr(recipe):
        rng = np.random.default_rng(3)
        boxes = a(1.0 / (1.0 + np.exp(-rng.normal(size=(n, 4, 4)))))
        return recipe(a(rng.normal(size=(n, 4, C))), boxes, [a(_cxcywh(g)) for g in data["yolo_gt"]],
                      [a(lab - 1) for lab in data["labels"]])

    def fcos(recipe):
        from polyloss.detection.fcos import fcos_anchors

        rng = np.random.default_rng(3)
        anchors, counts = fcos_anchors(64)
        k = anchors.shape[0]
        return recipe(a(rng.normal(size=(n, k, C))), a(rng.uniform(0.2, 3.0, size=(n, k, 4))),
                      a(rng.normal(size=(n, k))), a(anchors), counts, [a(g.reshape(-1, 4)) for g in data["fcos_gt"]],
                      [a(lab - 1) for lab in data["labels"]])

    yolo = {"grid": 3, "boxes_per_cell": 2, "num_classes": C}
    return [
        ("ssd", {"num_classes": C}, ssd),
        ("faster_rcnn", {"num_classes": C, "seed": 0, **BIG}, faster_rcnn),
        ("yolov1", {**yolo, "normalize": "batch"}, yolov1),
        ("yolov1", {**yolo, "normalize": "sum"}, yolov1),
        ("detr", {}, detr),
        ("yolov8", {"num_classes": C, "reg_max": V8_BINS}, yolov8),
        ("fcos", {"num_classes": C}, fcos),
    ]


def test_world_equals_local_without_process_group(xp):
    for name, config, call in _recipe_calls(xp):
        results = {}
        for over in ("local", "world"):
            recipe = pl.get_recipe(name, normalize_over=over, **config)
            assert recipe.normalize_over == over
            results[over] = call(recipe)
        local, world = results["local"], results["world"]
        assert set(local.components) == set(world.components)
        for key in local.components:
            a, b = xp.to_numpy(local.components[key]), xp.to_numpy(world.components[key])
            assert a == b, (name, config, key, a, b)


def test_torch_backend_collectives_without_process_group():
    torch = pytest.importorskip("torch")
    from polyloss._namespace import resolve

    x = torch.tensor(3.0, requires_grad=True)
    backend = resolve(x)
    assert not torch.distributed.is_initialized()
    assert backend.world_size() == 1
    assert backend.all_reduce_sum(x) is x


def test_generic_backend_collectives_are_identity(xp):
    from polyloss._namespace import resolve

    x = xp.asarray(np.array([1.0, 2.0]))
    backend = resolve(x)
    assert backend.world_size() == 1
    np.testing.assert_array_equal(xp.to_numpy(backend.all_reduce_sum(x)), [1.0, 2.0])


@pytest.mark.parametrize("name, config", [("ssd", {"num_classes": C}), ("faster_rcnn", {"num_classes": C}),
                                          ("yolov1", {}), ("yolov8", {"num_classes": C}),
                                          ("fcos", {"num_classes": C})])
@pytest.mark.parametrize("bad", ["global", "", None, 1])
def test_bad_normalize_over_is_rejected(name, config, bad):
    with pytest.raises(ValueError, match="normalize_over") as info:
        pl.get_recipe(name, normalize_over=bad, **config)
    assert repr(bad) in str(info.value)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
    # Skip the interpreter's finalisation: gloo's threads can still be unwinding there, and torch 2.13 then
    # aborts now and then ("terminate called without an active exception") after the results are written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
