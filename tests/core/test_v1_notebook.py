"""A fastai v1 notebook in a real Jupyter kernel (nbclient): with only its import line changed it
runs, its plots show inline (image/png outputs), ``recorder.plot(suggestion=True)`` prints v1's
lines, ``learn.summary()`` shows as text, and the kernel's inline backend is left as it was.
Skipped where nbclient / ipykernel are not installed (they are not learnkit dependencies)."""

from __future__ import annotations

import os

import pytest

from tests.core.tiny_images import make_class_folder

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

CELLS = [
    "from learnkit import *  # was: from fastai.vision import *\nprint(plt.get_backend())",
    "data = ImageDataBunch.from_folder(Path(DATA), size=16, bs=4, device='cpu').normalize(imagenet_stats)\n"
    "data.show_batch(rows=2, figsize=(3, 3))",
    "learn = cnn_learner(data, 'simple_cnn', metrics=error_rate)\nlearn.lr_find(num_it=20, stop_div=False)",
    "learn.recorder.plot(suggestion=True)",
    "learn.fit_one_cycle(1)",
    "interp = ClassificationInterpretation.from_learner(learn)\n"
    "interp.plot_confusion_matrix(figsize=(3, 3), dpi=60)",
    "learn.summary()",
    "import matplotlib; print(matplotlib.get_backend())",
]


def test_a_v1_notebook_runs_in_a_kernel_with_inline_plots(tmp_path):
    root = make_class_folder(tmp_path / "d")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"DATA = {str(root)!r}")] + [
        nbformat.v4.new_code_cell(c) for c in CELLS
    ]
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # conftest's Agg: not the kernel's
    client.execute(env=env)
    outs = [cell.outputs for cell in nb.cells[1:]]

    def pngs(i):
        return [o for o in outs[i] if "image/png" in o.get("data", {})]

    def text(i):
        return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outs[i])

    assert pngs(1), "show_batch's Figure is not shown"
    assert pngs(3) and "Min numerical gradient:" in text(3) and "Min loss divided by 10:" in text(3)
    assert pngs(5), "plot_confusion_matrix did not show inline"
    assert "Total params" in text(6) and "\\n" not in text(6)  # the summary shows as text, not a repr
    assert "inline" in text(0) and text(7) == text(0)  # the notebook's backend, before and after
