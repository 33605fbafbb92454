"""Classification metrics and the report evaluate.py prints and saves.

  report = classification_report(labels, predictions)  labels, predictions: int (N,)
  -> {"n", "accuracy", "macro": {precision, recall, f1}, "per_class": {emotion: {...}}, "confusion": 7x7 ints}
confusion[i][j] counts faces of true class i predicted as j.  Macro averages are over the classes the
labels hold (all 7 in FER-2013): a collection without disgust is not marked down for it.
"""
import numpy as np

from ferkit.dataset import EMOTIONS, NUM_CLASSES


def confusion_matrix(labels, predictions, num_classes=NUM_CLASSES):
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    return np.bincount(labels * num_classes + predictions, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def classification_report(labels, predictions):
    confusion = confusion_matrix(labels, predictions)
    true_positives = np.diag(confusion).astype(float)
    predicted, support = confusion.sum(0), confusion.sum(1)
    # A class never predicted (or absent) has precision (recall) 0 rather than NaN, as scikit-learn reports.
    precision = np.divide(true_positives, predicted, out=np.zeros(NUM_CLASSES), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros(NUM_CLASSES), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(NUM_CLASSES), where=denominator > 0)
    n = int(confusion.sum())
    present = support > 0 if n else np.ones(NUM_CLASSES, bool)
    return {
        "n": n,
        "accuracy": float(true_positives.sum() / n) if n else 0.0,
        "macro": {name: float(values[present].mean()) for name, values in
                  (("precision", precision), ("recall", recall), ("f1", f1))},
        "per_class": {e: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, e in enumerate(EMOTIONS)},
        "confusion": confusion.tolist(),
    }


def format_report(report):
    """Readable table: per-class precision/recall/F1/support, macro averages, then the confusion matrix."""
    lines = [f"{'':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for e, m in report["per_class"].items():
        lines.append(f"{e:<10}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>10}")
    macro = report["macro"]
    lines.append(f"{'macro':<10}{macro['precision']:>10.4f}{macro['recall']:>10.4f}{macro['f1']:>10.4f}{report['n']:>10}")
    lines.append(f"accuracy  {report['accuracy']:.4f} ({report['n']} faces)")
    lines.append("")
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(f"{'':<10}" + "".join(f"{e[:8]:>9}" for e in EMOTIONS))
    for e, row in zip(EMOTIONS, report["confusion"]):
        lines.append(f"{e:<10}" + "".join(f"{c:>9}" for c in row))
    return "\n".join(lines)


def plot_confusion(report, title, path):
    """Row-normalised confusion matrix as a PNG, with counts and percentages in the cells."""
    from ferkit.files import new_figure, save_figure
    counts = np.array(report["confusion"])
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = new_figure(figsize=(7, 6))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(NUM_CLASSES), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(NUM_CLASSES), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            ax.text(j, i, f"{rates[i, j]:.0%}\n{counts[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path)
