"""README.md and docs/: every relative link and anchor resolves, and every command they show
names an entry point or benchmark, a config file and flags that exist (checked by parsing the
commands and the scripts, not by running them)."""

import glob
import os
import re
import shlex

import pytest

from experiments import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted([os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"python3? (-m experiments\.[a-z_]+|benchmarks/\w+\.py)\b([^`\n]*)")
ABSL_FLAGS = {"help", "helpfull", "helpshort", "verbosity", "v"}
PLACEHOLDER = re.compile(r"^config\.(FIELD|[a-z_]+\.FIELD)$")


def _text(page: str) -> str:
  with open(page, encoding="utf-8") as f:
    return f.read()


def _prose(text: str) -> str:
  """The text outside fenced code blocks (headings in code are not anchors)."""
  return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(text: str) -> set[str]:
  """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-',
  repeated ones numbered."""
  found, seen = set(), {}
  for heading in re.findall(r"^#+ (.+)$", _prose(text), flags=re.M):
    slug = re.sub(r"[^\w\- ]", "", re.sub(r"[*`]", "", heading).strip().lower()).replace(" ", "-")
    found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
    seen[slug] = seen.get(slug, 0) + 1
  return found


def _links():
  for page in PAGES:
    for target in LINK.findall(_prose(_text(page))):
      if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto: are not checked
        yield pytest.param(page, target, id=f"{os.path.relpath(page, ROOT)}:{target}")


@pytest.mark.parametrize("page,target", list(_links()))
def test_relative_links_and_anchors_resolve(page, target):
  path, _, anchor = target.partition("#")
  resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
  assert os.path.exists(resolved), f"{target}: no file {resolved}"
  if anchor:
    assert anchor in anchors(_text(resolved)), f"{target}: no heading with that anchor"


def _commands():
  for page in PAGES:
    text = _text(page).replace("\\\n", " ")
    for name, rest in COMMAND.findall(text):
      yield pytest.param(name, rest, id=f"{os.path.relpath(page, ROOT)}:{name}{rest[:60]}")


def _absl_flags(module: str) -> set[str]:
  """Flags an entry point defines (its own and experiments/main.py's) and absl's own."""
  sources = _text(os.path.join(ROOT, "experiments", "main.py"))
  sources += _text(os.path.join(ROOT, "experiments", f"{module}.py"))
  defined = set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", sources))
  booleans = set(re.findall(r"DEFINE_bool\(\s*\"(\w+)\"", sources))
  return defined | {f"no{b}" for b in booleans} | ABSL_FLAGS | {"config"}


def _script_flags(script: str) -> set[str]:
  """A benchmark's options: argparse's add_argument or absl's DEFINE_*."""
  source = _text(os.path.join(ROOT, script))
  found = set(re.findall(r"add_argument\(\s*\"--([\w-]+)\"", source))
  found |= set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", source))
  found |= {f"no{b}" for b in re.findall(r"DEFINE_bool\(\s*\"(\w+)\"", source)}
  return {f.replace("-", "_") for f in found}


def _words(rest: str) -> list[str]:
  """The command's arguments up to the end of the command (a comment, `&`, `;` or `|`)."""
  words = []
  for word in shlex.split(rest.split(" #")[0], posix=True):
    if word in ("&", "&&", ";", "|") or word.startswith(("#", ">")):
      break
    words.append(word.strip("[]"))
  return words


@pytest.mark.parametrize("name,rest", list(_commands()))
def test_documented_commands_name_modules_and_flags_that_exist(name, rest):
  check_command(name, rest)


def check_command(name: str, rest: str) -> None:
  """Fails unless command `python NAME REST` names an existing module or script and only its
  flags (config overrides: fields of the config file it names)."""
  flags = [w[2:].split("=", 1) for w in _words(rest) if w.startswith("--")]
  if name.startswith("-m "):
    module = name.split(".", 1)[1]
    assert os.path.isfile(os.path.join(ROOT, "experiments", f"{module}.py")), name
    known = _absl_flags(module)
    spec = next((value[0] for flag, *value in flags if flag == "config" and value), None)
    spec = (spec or os.path.join("experiments", "configs", _default_config(module)))
    path, _, variant = spec.partition(":")
    path = path.split("[")[0]
    assert os.path.isfile(os.path.join(ROOT, path)), f"{name}: no config file {path}"
    fields = set(cli.field_names(cli.load_config(
        os.path.join(ROOT, path) + (f":{variant.rstrip(']')}" if variant.rstrip("]") else ""))[0]))
    for flag, *_ in flags:
      if flag.startswith("config."):
        if not PLACEHOLDER.match(flag):
          assert flag[len("config."):] in fields, f"{name}: --{flag} is not a config field"
      else:
        assert flag in known, f"{name}: --{flag} is not a flag of experiments.{module}"
  else:
    assert os.path.isfile(os.path.join(ROOT, name)), name
    if name.endswith(".py"):
      known = _script_flags(name) | {"help"}
      for flag, *_ in flags:
        assert flag.replace("-", "_") in known, f"{name}: --{flag} is not one of its options"


def _default_config(module: str) -> str:
  """The config file an entry point uses without --config (the module it imports)."""
  found = re.search(r"from experiments\.configs import (\w+)",
                    _text(os.path.join(ROOT, "experiments", f"{module}.py")))
  return f"{found.group(1)}.py"


def test_the_checks_see_commands_and_links():
  """The patterns find what the pages hold (an empty parametrisation would pass silently)."""
  assert len(list(_links())) > 30 and len(list(_commands())) > 25
  check_command("-m experiments.align", " --workdir=O --config=experiments/configs/align.py:quick")
  for name, rest in (("-m experiments.align", " --workdir=O --config.num_imagez=5"),
                     ("-m experiments.align", " --workdir=O --resume"),
                     ("-m experiments.train_philnet", " --config=experiments/configs/nope.py"),
                     ("-m experiments.train", " --workdir=O"),
                     ("benchmarks/train_bench.py", " --repeat=3")):
    with pytest.raises(AssertionError):
      check_command(name, rest)
  assert anchors("# A (**b**), `c`: d\n## A (**b**), `c`: d") == {"a-b-c-d", "a-b-c-d-1"}
