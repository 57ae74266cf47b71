"""`gcpo cluster up | down | status`: a local Ray cluster for development (see `gcpo.cluster.local`).

`up` binds to 127.0.0.1 on non-default ports and refuses any other address unless `--allow-remote` is given:
Ray's dashboard and Jobs API run whatever code they are sent.
"""

from __future__ import annotations

import argparse
import json
import sys

from gcpo.cluster.local import ClusterSpec

DEFAULTS = ClusterSpec()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start a local Ray head (and worker nodes) on loopback")
    up.add_argument("--host", default=DEFAULTS.host,
                    help=f"address the dashboard and Jobs API bind to (default {DEFAULTS.host})")
    up.add_argument("--port", type=int, default=DEFAULTS.port, help=f"GCS port (default {DEFAULTS.port})")
    up.add_argument("--dashboard-port", type=int, default=DEFAULTS.dashboard_port,
                    help=f"dashboard and Jobs API port (default {DEFAULTS.dashboard_port})")
    up.add_argument("--client-port", type=int, default=DEFAULTS.client_port,
                    help=f"Ray Client server port (default {DEFAULTS.client_port})")
    up.add_argument("--num-cpus", type=int, help="the head's logical CPUs (default max(4, cores))")
    up.add_argument("--workers", type=int, default=0, help="extra local worker nodes (default 0)")
    up.add_argument("--worker-cpus", type=int, default=DEFAULTS.worker_cpus,
                    help=f"logical CPUs per worker node (default {DEFAULTS.worker_cpus})")
    up.add_argument("--head-resource", default="", metavar="NAME",
                    help="a custom Ray resource the head declares (100 units), e.g. trainer: with "
                         "trainer.placement_resource=trainer the training workers run there")
    up.add_argument("--worker-resource", default="", metavar="NAME",
                    help="a custom Ray resource each worker node declares (100 units), e.g. generator: with "
                         "rollout.placement_resource=generator the vLLM generators run there")
    up.add_argument("--isolate-workers", action="store_true",
                    help="run each worker node as a host of its own on this machine: a private /tmp, /dev/shm and "
                         "cache folder (a mount namespace; needs root) and its own loopback address 127.0.0.2, ...")
    up.add_argument("--shared-dir", default="", metavar="DIR",
                    help="with --isolate-workers: the folder every node sees, standing for shared storage (default "
                         "/var/tmp/gcpo-shared-PORT); put trainer.output_dir and the MLflow store there")
    up.add_argument("--allow-remote", action="store_true",
                    help="allow a non-loopback --host (anyone reaching it can run code: firewall it)")
    sub.add_parser("down", help="stop the local cluster's processes (only its own) and remove its record")
    status = sub.add_parser("status", help="addresses, nodes and jobs of the local cluster")
    status.add_argument("--json", action="store_true", help="print the description as JSON")


def _up(args: argparse.Namespace) -> int:
    from gcpo.cluster.local import start_cluster

    spec = ClusterSpec(host=args.host, port=args.port, dashboard_port=args.dashboard_port,
                       client_port=args.client_port, num_cpus=args.num_cpus, workers=args.workers,
                       worker_cpus=args.worker_cpus, head_resource=args.head_resource,
                       worker_resource=args.worker_resource, isolated=args.isolate_workers,
                       shared_dir=args.shared_dir)
    record = start_cluster(spec, allow_remote=args.allow_remote)
    print(f"local Ray cluster up: {1 + spec.workers} node(s)")
    print(f"  dashboard / Jobs API  {record.dashboard_url}")
    print(f"  GCS (ray.init)        {record.gcs_address}")
    print(f"  Ray Client            ray://127.0.0.1:{spec.client_port}")
    if spec.isolated:
        print(f"  shared storage        {spec.shared_dir} (worker nodes: private /tmp, /dev/shm, cache; "
              f"addresses 127.0.0.2-{2 + spec.workers - 1})")
    print("submit a run:  gcpo submit -- gcpo train trainer.steps=4     stop it all:  gcpo cluster down")
    return 0


def _down() -> int:
    from gcpo.cluster.local import load_record, stop_cluster

    record = load_record()
    if record is None:
        print("no local cluster recorded; nothing to stop")
        return 0
    stop_cluster(record)
    print(f"local Ray cluster at {record.dashboard_url} stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    from gcpo.cluster.local import describe, load_record

    record = load_record()
    if record is None:
        print("no local cluster (start one with `gcpo cluster up`)")
        return 1
    info = describe(record)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0 if info["up"] else 1
    if not info["up"]:
        print(f"the recorded cluster ({info['dashboard']}) does not answer; `gcpo cluster down` cleans it up")
        return 1
    print(f"up: dashboard {info['dashboard']}, GCS {info['gcs_address']}, client {info['client_address']}")
    for node in info["nodes"]:
        role = "head" if node["head"] else "worker"
        custom = "".join(f", {v:g} {k}" for k, v in node.get("custom", {}).items())
        print(f"  {role:<6} {node['node_id']}  {node['ip']:<15} {node['state']:<6} {node['cpus']:g} CPU{custom}")
    jobs = ", ".join(f"{n} {s}" for s, n in info["jobs"].items()) or "none"
    print(f"jobs: {jobs}")
    return 0


def run(args: argparse.Namespace) -> int:
    from gcpo.cluster.runtime import ClusterError

    try:
        if args.action == "up":
            return _up(args)
        if args.action == "down":
            return _down()
        return _status(args)
    except ClusterError as e:
        print(f"gcpo cluster {args.action}: {e}", file=sys.stderr)
        return 1
