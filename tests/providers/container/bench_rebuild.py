"""Measure what the layer order buys: a cold image build of the container
quickstart against rebuilds after a score.py-only and a model-only change.

    python tests/providers/container/bench_rebuild.py [--runs 2]

Needs the Docker Engine (DOCKER_HOST or the local socket) and the base image
(scripts/testenv up docker). The cold build ignores Docker's cache, so it
downloads and installs the packages; the others use the cache as apply does.
Images it makes are removed at the end. Prints one line per run and the
median ratio cold / score.py-only.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import docker
import yaml

from modelform.engine.digests import digest_path
from modelform.providers import imagebuild as ib

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "container"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    client = docker.from_env(timeout=900)
    repo = f"mfbench-{uuid.uuid4().hex[:8]}/diabetes"
    cold, code, model, noop = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".modelform"))
        subprocess.run([sys.executable, "train.py"], cwd=root, check=True, capture_output=True)
        env = yaml.safe_load((root / "modelform.yaml").read_text())["environments"]["sklearn"]
        model_file = root / "models" / "ridge.pkl"
        spec = ib.ImageSpec(
            repository=repo, base_image=ib.DEFAULT_BASE_IMAGE,
            requirements=ib.requirements_of(env, root), source_dir=root / "src",
            entry_script=root / "src" / "score.py", code_digest=digest_path(root / "src"),
            python=env.get("python"), ca_bundle=ib.host_ca_bundle(None),
            models=(ib.ModelFiles("ridge", 1, digest_path(model_file), model_file),),
        )  # fmt: skip
        try:
            for run in range(args.runs):
                cold.append(ib.build(client, spec, nocache=True).seconds)
                script = root / "src" / "score.py"
                script.write_text(script.read_text() + f"\n# change {run}\n")
                spec = dataclasses.replace(spec, code_digest=digest_path(root / "src"))
                code.append(ib.build(client, spec).seconds)
                shutil.copy(model_file, root / f"ridge-{run}.pkl")
                with open(root / f"ridge-{run}.pkl", "ab") as f:
                    f.write(b"\0")  # new bytes: a new model version
                m = ib.ModelFiles("ridge", run + 2, f"sha256:bench{run}", root / f"ridge-{run}.pkl")
                spec = dataclasses.replace(spec, models=(m,))
                model.append(ib.build(client, spec).seconds)
                built = ib.build(client, spec)
                assert not built.built
                noop.append(built.seconds)
                print(
                    f"run {run + 1}: cold {cold[-1]:.1f} s, score.py only {code[-1]:.1f} s, "
                    f"model only {model[-1]:.1f} s, unchanged {noop[-1]:.2f} s (no build)"
                )
        finally:
            for img in client.images.list(name=repo):
                for tag in img.tags:
                    client.images.remove(tag, force=True)
    ratio = statistics.median(c / k for c, k in zip(cold, code, strict=True))
    print(f"median ratio cold / score.py-only rebuild: {ratio:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
