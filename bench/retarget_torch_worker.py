"""The retargeting loss of `learned_resize.retarget.reconstruct` rebuilt in PyTorch.

Runs under a Python that has torch (never the project's environment: torch is no
dependency of the package); `bench/retarget_vs_torch.py` starts it as

    TORCH_PYTHON bench/retarget_torch_worker.py PROBLEM.npz THREADS

where PROBLEM.npz holds the VGG weights (the project's cached arrays, HWIO), the target
feature maps, the layer weights and scalars, and the start image, all exported by the
main bench. The worker then answers one JSON line on stdout per JSON command line on
stdin (arrays travel through .npz files):

    {"cmd": "eval", "image": IN.npz, "out": OUT.npz}   loss and gradient at IN's image
    {"cmd": "time", "reps": N}                          N timed evaluations at the start
    {"cmd": "solve", "iterations": K, "budget": S, "memory": M, "out": OUT.npz}
        torch.optim.LBFGS (strong Wolfe) from the start, every evaluation's time and loss

The loss is written the way a PyTorch user would: NCHW tensors, `F.conv2d`, eager
autograd, `F.interpolate(..., antialias=True)` for the perceptual half scale (it agrees
with `jax.image.resize(..., 'linear', antialias=True)` to 2e-7).
"""

import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _names(data, key):
    return [str(s) for s in data[key]]


class Loss:
    """The objective `reconstruct.minimize` runs L-BFGS on: loss + range penalty."""

    def __init__(self, data):
        self.rec_layers = _names(data, "rec_layers")
        self.perc_layers = _names(data, "perc_layers")
        self.rec_order = _names(data, "rec_order")  # VGG-19 layers up to the deepest needed
        self.perc_order = _names(data, "perc_order")
        nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
        self.params = {}
        for net in ("rec", "perc"):
            for name in _names(data, f"{net}_order"):
                if name.startswith("conv"):
                    # HWIO -> OIHW
                    kernel = data[f"{net}/{name}/kernel"].transpose(3, 2, 0, 1)
                    self.params[f"{net}/{name}"] = (
                        torch.from_numpy(np.ascontiguousarray(kernel)),
                        torch.from_numpy(data[f"{net}/{name}/bias"]),
                    )
        self.rec_targets = {n: nchw(data[f"rec_target/{n}"]) for n in self.rec_layers}
        self.perc_targets = {n: nchw(data[f"perc_target/{n}"]) for n in self.perc_layers}
        self.rec_weights = {n: float(data[f"rec_weight/{n}"]) for n in self.rec_layers}
        self.perc_weights = {n: float(data[f"perc_weight/{n}"]) for n in self.perc_layers}
        scalars = ("alpha", "beta", "gamma", "tv_weight", "stats_weight", "range_weight")
        self.s = {k: float(data[k]) for k in scalars}
        self.perc_size = tuple(int(v) for v in data["perc_size"])
        self.mean = torch.from_numpy(data["mean"])
        self.std = torch.from_numpy(data["std"])
        self.caffe_mean = torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)

    def features(self, net, order, x_nchw, layers):
        x = x_nchw.flip(1) * 255.0 - self.caffe_mean  # RGB [0, 1] -> Caffe BGR
        out = {}
        for name in order:
            if name.startswith("conv"):
                kernel, bias = self.params[f"{net}/{name}"]
                x = F.relu(F.conv2d(x, kernel, bias, padding=1))
            else:
                x = F.max_pool2d(x, 2, 2)
            if name in layers:
                out[name] = x
        return out

    @staticmethod
    def feature_loss(feats, targets, weights):
        total = 0.0
        for name, target in targets.items():
            err = torch.mean(torch.square(feats[name] - target))
            total = total + weights[name] * err / (torch.mean(torch.square(target)) + 1e-8)
        return total

    def __call__(self, image):
        """image [1, h, w, 3] (NHWC, like the project's) -> scalar loss."""
        s = self.s
        x = image.permute(0, 3, 1, 2)
        feats = self.features("rec", self.rec_order, x, self.rec_layers)
        loss = s["alpha"] * self.feature_loss(feats, self.rec_targets, self.rec_weights)
        if self.perc_layers:
            small = F.interpolate(
                x, size=self.perc_size, mode="bilinear", antialias=True, align_corners=False
            )
            feats = self.features("perc", self.perc_order, small, self.perc_layers)
            loss = loss + s["beta"] * self.feature_loss(feats, self.perc_targets, self.perc_weights)
        dy = image[:, 1:] - image[:, :-1]
        dx = image[:, :, 1:] - image[:, :, :-1]
        tv = torch.mean(torch.square(dy)) + torch.mean(torch.square(dx))
        mean = torch.mean(image, dim=(0, 1, 2))
        std = torch.sqrt(torch.mean(torch.square(image - mean), dim=(0, 1, 2)) + 1e-12)
        stats = torch.sum(torch.square(mean - self.mean)) + torch.sum(torch.square(std - self.std))
        loss = loss + s["gamma"] * (s["tv_weight"] * tv + s["stats_weight"] * stats)
        excess = torch.square(F.relu(image - 1.0)) + torch.square(F.relu(-image))
        return loss + s["range_weight"] * torch.mean(excess)

    def value_and_grad(self, image_np):
        x = torch.from_numpy(np.ascontiguousarray(image_np)).requires_grad_(True)
        loss = self(x)
        loss.backward()
        return float(loss.detach()), x.grad.numpy()


class _Budget(Exception):
    pass


def solve(loss, start, iterations, budget, memory):
    """torch.optim.LBFGS from start: (times, losses) of every evaluation, iterations."""
    x = torch.from_numpy(np.ascontiguousarray(start)).requires_grad_(True)
    # No early stop from torch's tolerances: only the iteration cap and the time budget.
    opt = torch.optim.LBFGS(
        [x],
        lr=1.0,
        max_iter=iterations,
        max_eval=10**9,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        history_size=memory,
        line_search_fn="strong_wolfe",
    )
    times, losses = [], []
    t0 = time.perf_counter()

    def closure():
        if times and times[-1] > budget:
            raise _Budget
        opt.zero_grad()
        value = loss(x)
        value.backward()
        times.append(time.perf_counter() - t0)
        losses.append(float(value.detach()))
        return value

    try:
        opt.step(closure)
        stopped = "iteration cap"
    except _Budget:
        stopped = f"time budget {budget:.0f} s"
    iters = int(opt.state[opt._params[0]].get("n_iter", 0))
    return times, losses, iters, stopped


def main():
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    with np.load(sys.argv[1], allow_pickle=False) as archive:
        data = {k: archive[k] for k in archive.files}
    loss = Loss(data)
    start = data["start"]
    hello = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "eval":
            with np.load(cmd["image"]) as f:
                image = f["image"]
            value, grad = loss.value_and_grad(image)
            np.savez(cmd["out"], loss=np.float64(value), grad=grad)
            reply = {"loss": value}
        elif cmd["cmd"] == "time":
            walls, cpus = [], []
            for _ in range(cmd["reps"]):
                w, c = time.perf_counter(), time.process_time()
                loss.value_and_grad(start)
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
            reply = {"wall": walls, "cpu": cpus}
        elif cmd["cmd"] == "solve":
            cpu = time.process_time()
            times, losses, iters, stopped = solve(
                loss, start, cmd["iterations"], cmd["budget"], cmd["memory"]
            )
            reply = {
                "times": times,
                "losses": losses,
                "iterations": iters,
                "stopped": stopped,
                "cpu": time.process_time() - cpu,
            }
        elif cmd["cmd"] == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd['cmd']!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
