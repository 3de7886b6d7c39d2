"""The package's shape, checked: small modules, honest imports, light configs.

The dependency direction itself is `lint-imports`' job (pyproject.toml's
contracts, run by `make test`); these are what it does not see.
"""

import ast
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent
PACKAGE = ROOT / "pumer_jax"
HEAVY = ("tensorflow_datasets", "transformers", "torch", "grain")


def package_modules():
  return sorted(PACKAGE.rglob("*.py"))


def test_no_module_over_400_lines():
  long = {str(p.relative_to(ROOT)): n for p in package_modules()
          if (n := len(p.read_text().splitlines())) > 400}
  assert not long, f"split these by responsibility: {long}"


def test_no_function_local_imports_of_the_project():
  """An import inside a function that names the project hides a cycle or
  a layering breach from lint-imports; optional heavy dependencies (torch,
  tensorboardX) may still be imported where they are used."""
  offenders = []
  for path in package_modules():
    tree = ast.parse(path.read_text())
    for func in ast.walk(tree):
      if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      for node in ast.walk(func):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom)
                 else [])
        if any(n.split(".")[0] == "pumer_jax" for n in names):
          offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
  assert not offenders, offenders


# Every config file with the variants its docstring names.
CONFIGS = {
    "vilt_shapes": ["", "method=pumer", "runlocal", "pretrain,run=1",
                    "pretrain"],
    "vilt_vqa": ["", "method=pumer"], "vilt_ve": ["method=pumer"],
    "vilt_nlvr2": [""], "vilt_retrieval": [""],
    "meter_vqa": ["", "shapes", "runlocal", "shapes,pretrain,run=1",
                  "shapes,pretrain,run=2", "shapes,pretrain"],
    "meter_ve": ["method=pumer"],
    "meter_nlvr2": [""], "meter_retrieval": [""],
    "efficientvlm": ["model=vilt,stage=distill", "model=meter,stage=prune"],
}
PARSE = """
import importlib.util, json, sys
heavy = {}
for name, args in json.loads(sys.argv[1]).items():
  spec = importlib.util.spec_from_file_location(name, f"configs/{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for arg in args:
    module.get_config(arg or None)
  heavy[name] = sorted(m for m in sys.modules if m.split(".")[0] in %r)
print(json.dumps(heavy))
""" % (HEAVY,)


def test_parsing_a_config_imports_nothing_heavy():
  """One process parses every config (and variant) in turn; after each,
  none of TFDS, transformers, torch or grain may have been imported."""
  out = subprocess.run([sys.executable, "-c", PARSE, json.dumps(CONFIGS)],
                       cwd=ROOT, capture_output=True, text=True, check=True)
  heavy = json.loads(out.stdout.strip().splitlines()[-1])
  assert heavy == {name: [] for name in CONFIGS}, heavy
