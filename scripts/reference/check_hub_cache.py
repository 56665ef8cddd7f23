"""Checks that huggingface_hub reads a hub cache folder bertology wrote, file for file.

usage: check_hub_cache.py CACHE_DIR [CACHE_DIR...]
In each cache folder, for every repository folder (models--ORG--NAME, datasets--ORG--NAME), every revision named in
refs/ and every snapshot commit, asks `hf_hub_download(repo_id, filename, repo_type=...,
revision=..., local_files_only=True, cache_dir=CACHE_DIR)` for each file of the snapshot and
compares the bytes it returns with the blob bertology wrote; LFS blobs (64-hex names) must also
hash to their name. Also runs `scan_cache_dir` and reports its warnings. Exits 1 on any
mismatch, missing file or warning.

Caches to check: BERTOLOGY_KEEP_HUB_CACHE=DIR cargo test --release --test it hub_download::
keeps each test's cache in DIR/<test>; then check_hub_cache.py DIR/*
"""
import hashlib
import os
import re
import sys

import huggingface_hub
from huggingface_hub import hf_hub_download, scan_cache_dir


def repo_of(folder):
    kind, _, rest = folder.partition("--")
    return {"models": "model", "datasets": "dataset"}[kind], rest.replace("--", "/")


def files_of(snapshot):
    for dirpath, _, names in os.walk(snapshot):
        for name in names:
            path = os.path.join(dirpath, name)
            yield os.path.relpath(path, snapshot).replace(os.sep, "/"), path


def revisions_of(repo_dir):
    """(revision, commit) for each refs/ file, and each snapshot commit as its own revision."""
    refs = os.path.join(repo_dir, "refs")
    for dirpath, _, names in os.walk(refs):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path) as f:
                yield os.path.relpath(path, refs).replace(os.sep, "/"), f.read().strip()
    for commit in sorted(os.listdir(os.path.join(repo_dir, "snapshots"))):
        yield commit, commit


def main(cache):
    print(f"huggingface_hub {huggingface_hub.__version__}, cache {cache}")
    failures = checked = 0
    for folder in sorted(os.listdir(cache)):
        if not re.match(r"^(models|datasets)--", folder):
            continue
        repo_type, repo_id = repo_of(folder)
        repo_dir = os.path.join(cache, folder)
        for revision, commit in revisions_of(repo_dir):
            snapshot = os.path.join(repo_dir, "snapshots", commit)
            for filename, path in sorted(files_of(snapshot)):
                link = os.readlink(path)
                blob = os.path.normpath(os.path.join(os.path.dirname(path), link))
                with open(blob, "rb") as f:
                    ours = f.read()
                problems = []
                if os.path.dirname(blob) != os.path.join(repo_dir, "blobs"):
                    problems.append(f"links outside blobs/ ({link})")
                name = os.path.basename(blob)
                if len(name) == 64 and hashlib.sha256(ours).hexdigest() != name:
                    problems.append("sha256 differs from the blob's name")
                try:
                    got = hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                                          local_files_only=True, cache_dir=cache)
                    with open(got, "rb") as f:
                        if f.read() != ours:
                            problems.append("different bytes")
                except Exception as e:  # noqa: BLE001 - any failure to read is the finding
                    problems.append(f"{type(e).__name__}: {e}".splitlines()[0])
                checked += 1
                status = "OK  " if not problems else "FAIL"
                failures += bool(problems)
                print(f"{status} {repo_type:7} {repo_id}@{revision} {filename} ({len(ours)} bytes)"
                      + ("" if not problems else ": " + "; ".join(problems)))
    info = scan_cache_dir(cache)
    for w in info.warnings:
        print(f"FAIL scan_cache_dir: {w}")
    failures += len(info.warnings)
    for r in sorted(info.repos, key=lambda r: r.repo_id):
        print(f"scan_cache_dir: {r.repo_type} {r.repo_id}: {r.nb_files} files, {r.size_on_disk} bytes, "
              f"revisions {sorted(rev.commit_hash[:8] for rev in r.revisions)}, refs {sorted(r.refs)}")
    print(f"{checked} files read through huggingface_hub, {failures} problems")
    return 1 if failures or not checked else 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or not all(os.path.isdir(d) for d in sys.argv[1:]):
        sys.exit(__doc__)
    sys.exit(max(main(d) for d in sys.argv[1:]))
