"""examples/alignment_quickstart.ipynb runs top to bottom (offline, 300 images), so it cannot
rot: every cell executes and the ceiling and the alignment are printed."""

import os

import nbclient
import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "alignment_quickstart.ipynb")


def test_the_quickstart_notebook_executes(offline_data_dir, tmp_path, monkeypatch):
  monkeypatch.setenv("ALIGN_JAX_DATA_DIR", offline_data_dir)
  monkeypatch.setenv("ALIGN_JAX_NOTEBOOK_IMAGES", "300")
  monkeypatch.setenv("ALIGN_JAX_NOTEBOOK_FIGURES", str(tmp_path / "figures"))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for output in cell.outputs)
  assert "noise ceiling" in printed and "of the noise ceiling" in printed, printed
  assert sorted(os.listdir(tmp_path / "figures")) == ["alignment.png", "confusions.png",
                                                      "rdms.png"]
