#!/usr/bin/env python3
"""Checks the torch label of every CTest test against what the test really needs.

A test needs LibTorch when its executable links it (readelf -d lists libtorch or libc10) or
when it runs the cmdistill binary (which links it): its command names the binary, or
CMDISTILL_BIN is in its environment. Such a test must be labelled torch, and no other may be,
so that `ctest -LE torch` runs exactly the tests that need no LibTorch.

Usage: check_labels.py BUILD_DIR. Exit status 1 with one line per wrong label.
"""
import json
import os
import shutil
import subprocess
import sys


def links_torch(exe):
  if not exe or not os.path.isfile(exe):
    return False
  out = subprocess.run(['readelf', '-d', exe], capture_output=True, text=True).stdout
  return 'libtorch' in out or 'libc10' in out


def main():
  build = sys.argv[1]
  ctest = shutil.which('ctest') or 'ctest'
  listing = subprocess.run([ctest, '--show-only=json-v1'], cwd=build, check=True,
                           capture_output=True, text=True).stdout
  wrong = []
  checked = 0
  for t in json.loads(listing)['tests']:
    if t['name'] == 'test_labels':
      continue
    command = t.get('command') or []
    props = {p['name']: p['value'] for p in t.get('properties', [])}
    labels = props.get('LABELS', [])
    env = props.get('ENVIRONMENT', [])
    runs_binary = (any(os.path.basename(a) == 'cmdistill' for a in command) or
                   any(e.startswith('CMDISTILL_BIN=') for e in env))
    needs = runs_binary or links_torch(command[0] if command else '')
    checked += 1
    if needs and 'torch' not in labels:
      wrong.append(f"{t['name']}: needs LibTorch "
                   f"({'runs cmdistill' if runs_binary else 'links it'}) but is not labelled torch")
    if not needs and 'torch' in labels:
      wrong.append(f"{t['name']}: labelled torch but neither links LibTorch nor runs cmdistill")
  for w in wrong:
    print(w)
  print(f'{checked} tests checked, {len(wrong)} wrong labels')
  return 1 if wrong else 0


if __name__ == '__main__':
  sys.exit(main())
