"""Files of an alignment run: atomic writes, RDMs with sidecars, provenance, and publishing
a run's outputs as one set.

Every file is written to a temporary name and renamed into place, so an interrupted run never
leaves a truncated results.json, report or RDM behind. A run writes everything into a staging
folder and `publish` then replaces the previous run's outputs as a set: results.json goes first
and comes back last, so a crash at any point never leaves a results.json beside the RDMs or
figures of another run (each names its `run_id`).
"""

import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess

import numpy as np

RDM_DIR = "rdms"
FIGURE_DIR = "figures"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
STAGING_DIR = ".alignment-staging"  # a run in progress (or a crashed one: removed at start)
EVENTS_PATTERN = "events.out.tfevents.*"
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def atomic_write_text(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def atomic_write_json(path: str, value) -> None:
  atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, allow_nan=True) + "\n")


def figure_path(workdir: str, name: str) -> str:
  return os.path.join(workdir, FIGURE_DIR, f"{name}.png")


def save_rdm(workdir: str, name: str, rdm: np.ndarray, **sidecar) -> str:
  """Writes `rdms/<name>.npy` (condensed, float32, scipy pdist order) and `rdms/<name>.json`
  (metric, layer, image order ..., and the .npy file's sha256, which a later run checks before
  reusing it); returns the .npy path relative to workdir."""
  relative = os.path.join(RDM_DIR, f"{name}.npy")
  path = os.path.join(workdir, relative)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    np.save(f, np.asarray(rdm, np.float32))
  with open(path + ".tmp", "rb") as f:
    sha256 = hashlib.file_digest(f, "sha256").hexdigest()
  os.replace(path + ".tmp", path)
  atomic_write_json(os.path.join(workdir, RDM_DIR, f"{name}.json"),
                    dict(sidecar, format="condensed upper triangle, scipy.spatial.distance.pdist "
                         "order, float32", num_pairs=int(np.size(rdm)), sha256=sha256))
  return relative


def staging_dir(workdir: str) -> str:
  """A fresh, empty staging folder for a run's outputs (a crashed run's leftovers removed);
  call it while holding the workdir's lock."""
  stage = os.path.join(workdir, STAGING_DIR)
  shutil.rmtree(stage, ignore_errors=True)
  os.makedirs(stage)
  return stage


def publish(stage: str, workdir: str) -> None:
  """Moves a finished run's outputs from `stage` into `workdir`, replacing the previous run's
  results.json, report.md, rdms/, figures/ and TensorBoard events as one set."""
  results = os.path.join(workdir, RESULTS_FILE)
  if os.path.exists(results):
    os.remove(results)
  for old in glob.glob(os.path.join(workdir, EVENTS_PATTERN)):
    os.remove(old)
  for name in (RDM_DIR, FIGURE_DIR, REPORT_FILE):
    target = os.path.join(workdir, name)
    if os.path.isdir(target):
      shutil.rmtree(target)
    elif os.path.exists(target):
      os.remove(target)
    if os.path.exists(os.path.join(stage, name)):
      os.replace(os.path.join(stage, name), target)
  for events in glob.glob(os.path.join(stage, EVENTS_PATTERN)):
    os.replace(events, os.path.join(workdir, os.path.basename(events)))
  os.replace(os.path.join(stage, RESULTS_FILE), results)
  shutil.rmtree(stage)


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def _git_commit() -> str | None:
  try:
    result = subprocess.run(["git", "-C", PROJECT_DIR, "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True, timeout=10)
    dirty = subprocess.run(["git", "-C", PROJECT_DIR, "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def data_provenance(data_dir: str) -> dict:
  """The data directory and its PROVENANCE.json (which marks the CIFAR-10 JPEG stand-in)."""
  info = {"data_dir": os.path.abspath(data_dir) if data_dir else "tensorflow-datasets",
          "provenance_file": None, "cifar10_stand_in": False}
  path = os.path.join(data_dir, "PROVENANCE.json") if data_dir else ""
  if path and os.path.isfile(path):
    with open(path) as f:
      info["provenance_file"] = json.load(f)
    info["cifar10_stand_in"] = bool(info["provenance_file"].get("cifar10", {}).get("stand_in"))
  return info


def software_provenance() -> dict:
  return {"align_jax": _version("align_jax"), "git_commit": _git_commit(),
          "jax": _version("jax"), "flax": _version("flax"), "numpy": _version("numpy"),
          "scipy": _version("scipy"), "python": platform.python_version()}
