"""The README's pipeline block runs as written, on a small synthetic slice instead of FER-2013."""
import os
import re
import shlex
import shutil

import pytest

from conftest import ROOT, balanced_labels, csv_rows, run_script

# What differs from the README's lines: a small CSV for the real one, a one-epoch schedule for 45,
# the sample photo's folder for the user's photos.
SUBSTITUTIONS = {"--epochs 45 --patience 45": "--epochs 1 --patience 1 --batch-size 16", "my_photos/": "photos/",
                 "my_clip.mp4": "clip.avi"}


def pipeline_lines():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"## The pipeline\n.*?```\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_pipeline_block_runs_as_written(tmp_path):
    labels = [*balanced_labels(12), *balanced_labels(4), *balanced_labels(4)]
    usages = ["Training"] * 84 + ["PublicTest"] * 28 + ["PrivateTest"] * 28
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(csv_rows(labels, usages)) + "\n")
    (tmp_path / "photos").mkdir()
    shutil.copy(os.path.join(ROOT, "samples", "astronaut.png"), tmp_path / "photos")
    import cv2
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for _ in range(5):
        writer.write(cv2.imread(os.path.join(ROOT, "samples", "astronaut.png")))
    writer.release()
    lines = pipeline_lines()
    assert [shlex.split(l)[:2] for l in lines] == [["ferkit", mode] for mode in (
        "preprocess", "train", "evaluate", "evaluate", "predict", "predict", "annotate", "export")]
    for line in lines:
        for old, new in SUBSTITUTIONS.items():
            line = line.replace(old, new)
        words = shlex.split(line)
        # The ferkit command as `python -m ferkit` runs it, in this process: what a subprocess adds is imports
        proc = run_script(os.path.join("ferkit", "__main__.py"), *words[1:], cwd=tmp_path)
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
    for made in ("data/fer2013.npz", "checkpoints/acnn_alstm/best/checkpoint", "checkpoints/acnn_alstm/curves.png",
                 "checkpoints/acnn_alstm/eval_PrivateTest_tta.json", "runs/eval/dnn/eval_PrivateTest_tta.json",
                 "runs/annotated/astronaut.png", "runs/acnn_alstm.tflite", "runs/clip/emotions.csv",
                 "runs/clip/emotions.summary.json", "runs/clip/annotated.mp4", "runs/archive/summary.json"):
        assert (tmp_path / made).is_file(), made
