"""The two tasks the trainer knows: classification and image quality (IQA).

A `Task` is chosen once from `config.task` and owns everything that differs
between them: the targets a batch carries, the loss, the per-step metric, what an
eval step returns, how eval outputs reduce to metrics, the log line and the
results table's columns. The trainer itself has no `if task == ...`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from learned_resize import iqa


class Classification:
    """Softmax cross-entropy with label smoothing; top-1/top-5 over the eval split."""

    name = "classification"
    targets = ("label",)
    columns = (("top-1", "top1"), ("top-5", "top5"), ("eval loss", "loss"))
    # Eval outputs are sums: reduced on device, batch by batch.
    gathers_predictions = False

    def __init__(self, label_smoothing: float):
        self.label_smoothing = label_smoothing

    def loss(self, logits, batch):
        targets = optax.smooth_labels(
            jax.nn.one_hot(batch["label"], logits.shape[-1]), self.label_smoothing
        )
        return optax.softmax_cross_entropy(logits, targets).mean()

    def train_metrics(self, logits, batch) -> dict:
        return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

    def eval_outputs(self, logits, batch) -> dict:
        labels, mask = batch["label"], batch["mask"]
        top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return {
            "correct_top1": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
            "correct_top5": jnp.sum(jnp.any(top5 == labels[:, None], -1) * mask),
            "loss_sum": jnp.sum(loss * mask),
            "count": jnp.sum(mask),
        }

    def reduce(self, totals: dict) -> tuple[dict, dict | None]:
        """Summed eval outputs -> (metrics, per-example predictions or None)."""
        count = max(float(totals["count"]), 1.0)
        metrics = {
            "top1": float(totals["correct_top1"]) / count,
            "top5": float(totals["correct_top5"]) / count,
            "loss": float(totals["loss_sum"]) / count,
            "num_examples": float(totals["count"]),
        }
        return metrics, None

    def train_summary(self, m: dict) -> str:
        return f"acc {m['accuracy']:.3f}"

    def eval_summary(self, m: dict) -> str:
        return f"top-1 {m['top1']:.4f}  top-5 {m['top5']:.4f}  loss {m['loss']:.4f}"


class ImageQuality:
    """NIMA-style score distributions with the EMD loss; PLCC/SRCC over all predictions."""

    name = "iqa"
    targets = ("hist",)
    columns = (
        ("PLCC", "plcc"),
        ("SRCC", "srcc"),
        ("EMD", "emd"),
        ("binary acc", "binary_accuracy"),
    )
    # Correlations are not sums over batches: every prediction is gathered on the host.
    gathers_predictions = True

    def loss(self, probs, batch):
        return jnp.mean(iqa.emd_loss(probs, batch["hist"]))

    def train_metrics(self, probs, batch) -> dict:
        error = jnp.abs(iqa.mean_score(probs) - iqa.mean_score(batch["hist"]))
        return {"mean_score_abs_error": jnp.mean(error)}

    def eval_outputs(self, probs, batch) -> dict:
        return {"probs": probs, "hist": batch["hist"], "mask": batch["mask"]}

    def reduce(self, gathered: dict) -> tuple[dict, dict | None]:
        metrics = iqa.iqa_eval_metrics(gathered["probs"], gathered["hist"], gathered["mask"])
        predictions = {k: np.asarray(gathered[k]) for k in ("probs", "hist", "mask")}
        return {k: float(v) for k, v in metrics.items()}, predictions

    def train_summary(self, m: dict) -> str:
        return f"score MAE {m['mean_score_abs_error']:.3f}"

    def eval_summary(self, m: dict) -> str:
        return f"PLCC {m['plcc']:.4f}  SRCC {m['srcc']:.4f}  EMD {m['emd']:.4f}"


Task = Classification | ImageQuality


def get_task(config) -> Task:
    """The task of `config.task` ('classification' or 'iqa'; validated by config/validation.py)."""
    if config.task == "iqa":
        return ImageQuality()
    return Classification(config.optim.label_smoothing)


def results_table(task: Task, rows: dict[str, dict]) -> str:
    """A markdown table of each stage's final eval metrics (`rows`: stage -> metrics)."""
    columns = task.columns
    head = "| stage | " + " | ".join(name for name, _ in columns) + " | train time (s) |"
    lines = [head, "|---" * (len(columns) + 2) + "|"]
    for stage, m in rows.items():
        values = " | ".join(_cell(m.get(key)) for _, key in columns)
        seconds = m.get("train_seconds")
        shown = "-" if seconds is None else f"{seconds:.0f}"
        lines.append(f"| {stage} | {values} | {shown} |")
    return "\n".join(lines)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4f}"
