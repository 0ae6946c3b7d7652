#!/usr/bin/env python3
"""Shrinks fuzz/corpus/<target> to at most 200 files and ~190 KiB, picked
greedily by the coverage features each adds (libFuzzer's merge control
file tells which input has which features). Run after `cargo fuzz cmin`:

    fuzz/pick-corpus.py <target>
"""
import os
import shutil
import subprocess
import sys
import tempfile

MAX_FILES, MAX_BYTES = 200, 190 * 1024

target = sys.argv[1]
os.chdir(os.path.dirname(os.path.abspath(__file__)))
binary = f"target/x86_64-unknown-linux-gnu/release/{target}"
corpus = f"corpus/{target}"
with tempfile.TemporaryDirectory() as tmp:
    control, out, old = f"{tmp}/control", f"{tmp}/out", f"{tmp}/old"
    os.mkdir(out)
    shutil.copytree(corpus, old)
    subprocess.run([binary, "-merge=1", f"-merge_control_file={control}", out, old],
                   check=True, capture_output=True)
    lines = open(control).read().split("\n")
    count = int(lines[0])
    files = lines[2:2 + count]
    features = {}
    for line in lines[2 + count:]:
        parts = line.split()
        if parts and parts[0] == "FT":
            features[int(parts[1])] = set(map(int, parts[2:]))
    covered, keep, total = set(), [], 0
    while len(keep) < MAX_FILES and features:
        # The most new features per size, small inputs slightly preferred.
        best = max(features, key=lambda i: len(features[i] - covered)
                   / (1 + os.path.getsize(files[i]) / 2048))
        new = features.pop(best)
        size = os.path.getsize(files[best])
        if not new - covered:
            break
        if total + size > MAX_BYTES:
            continue
        keep.append(files[best])
        covered |= new
        total += size
    shutil.rmtree(corpus)
    os.mkdir(corpus)
    for f in keep:
        shutil.copy(f, corpus)
print(f"{target}: kept {len(keep)} files, {total} bytes, {len(covered)} features")
