#!/usr/bin/env python3
"""The obvious alternative to modelform's refresh: one GET per object, as a
per-object provider (the Terraform kubernetes provider) reads each resource it
manages. ``bench/k8s/run.py`` runs it as its own process, timed and counted
like ``modelform plan``.

It reads a JSON list of objects (``[{"kind", "namespace", "name"}, ...]``: the
objects a modelform state records, as a Terraform state would), then GETs each
one through the kubernetes Python client that modelform uses, ``--parallelism``
at a time (Terraform's default is 10), decoding each answer as JSON as
modelform's client does (``_preload_content=False`` + ``json.loads``: the
client's model classes, slower, are not used). Every object must be there (a
no-op refresh). Prints one JSON line: the GETs sent, the seconds they took
(after the client is made), the objects by kind.

Usage: python bench/k8s/get_each.py OBJECTS.json [--kubeconfig F] [--parallelism 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def readers(api: Any) -> dict[str, Callable[[str, str], Any]]:
    """Kind → a read of one object by (namespace, name), raw (not deserialized)."""
    from kubernetes import client

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    auto = client.AutoscalingV2Api(api)
    raw = {"_preload_content": False}
    return {
        "Namespace": lambda ns, name: core.read_namespace(name, **raw),
        "Deployment": lambda ns, name: apps.read_namespaced_deployment(name, ns, **raw),
        "Service": lambda ns, name: core.read_namespaced_service(name, ns, **raw),
        "Secret": lambda ns, name: core.read_namespaced_secret(name, ns, **raw),
        "HorizontalPodAutoscaler": (
            lambda ns, name: auto.read_namespaced_horizontal_pod_autoscaler(name, ns, **raw)
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("objects", type=Path, help="JSON list of {kind, namespace, name}")
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    ap.add_argument("--parallelism", type=int, default=10, help="GETs at once (Terraform's 10)")
    args = ap.parse_args()
    from kubernetes import config

    objects: list[dict[str, str]] = json.loads(args.objects.read_text())
    api = config.new_client_from_config(config_file=args.kubeconfig)
    read = readers(api)

    def get(obj: dict[str, str]) -> str:
        r = read[obj["kind"]](obj.get("namespace", ""), obj["name"])
        body = json.loads(r.data)
        if body.get("metadata", {}).get("name") != obj["name"]:
            raise SystemExit(f"GET {obj['kind']} {obj['name']}: another object came back")
        return obj["kind"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.parallelism) as pool:
        kinds = Counter(pool.map(get, objects))  # a 404 raises: every object must be there
    seconds = time.perf_counter() - t0
    api.close()
    print(json.dumps({"gets": len(objects), "seconds": seconds, "kinds": dict(kinds)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
