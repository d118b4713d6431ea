#!/usr/bin/env python3
"""Fails on hand-written status propagation in common/, services/ and app/.

One way to propagate an absl::Status (docs/architecture.md, "Errors"): the
macros of common/status/status_macros.h. This finds the forms they replace,

    if (!x.ok()) return x.status();          (or `return x;`, braced or not)
    if (auto s = F(); !s.ok()) return s;     (any declaration in the if)

and prints each with its file and line. A grpc::Status (the adapters' own
type, which the macros do not take) is allowed. Exit status 1 when any is found.
"""
import pathlib
import re
import subprocess
import sys

BARE = re.compile(r'if \(!(\w+)\.ok\(\)\)\s*\{?\s*return \1(?:\.status\(\))?;')
INIT = re.compile(
    r'if \(([^;{}]*?)\b(\w+) =[^;{}]*;\s*!\2\.ok\(\)\)\s*\{?\s*return \2(?:\.status\(\))?;')


def grpc_status(text, var, pos):
  """Whether `var` is declared as a grpc::Status shortly before `pos`."""
  window = text[max(0, pos - 400):pos]
  return re.search(r'grpc::Status\s+' + re.escape(var) + r'\b', window) is not None


def main():
  root = pathlib.Path(__file__).resolve().parent.parent
  files = subprocess.run(
      ['git', 'ls-files', 'common/*.cc', 'common/*.h', 'services/*.cc', 'app/*.cc', 'app/*.h',
       'services/*.h'],
      cwd=root, check=True, capture_output=True, text=True).stdout.split()
  found = []
  for name in files:
    text = (root / name).read_text()
    for m in BARE.finditer(text):
      if not grpc_status(text, m.group(1), m.start()):
        found.append((name, text.count('\n', 0, m.start()) + 1, m.group(0)))
    for m in INIT.finditer(text):
      if 'grpc::Status' not in m.group(1):
        found.append((name, text.count('\n', 0, m.start()) + 1, m.group(0)))
  for name, line, what in found:
    print(f'{name}:{line}: hand-written status propagation: '
          f'{" ".join(what.split())}')
  if found:
    print(f'{len(found)} found: use CMDISTILL_RETURN_IF_ERROR, '
          'CMDISTILL_RETURN_IF_ERROR_ANNOTATED or CMDISTILL_ASSIGN_OR_RETURN '
          '(common/status/status_macros.h)')
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
