"""`gcpo submit [--address URL] [--wait] [--tracking-uri URI] [--output-dir DIR] -- gcpo train|sweep ...`.

Submits the command as a Ray job (see `gcpo.cluster.jobs`): the project folder is shipped, the run logs to
`--tracking-uri` (default: this project's MLflow store when the cluster is on this machine) and checkpoints to
`--output-dir` (default: this project's `runs/` when the cluster is on this machine). Prints the job id and how
to follow it; `--wait` follows its logs and exits 0 only if it succeeded.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_address_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", metavar="URL",
                        help="the cluster's dashboard URL http://HOST:PORT (default: $RAY_API_SERVER_ADDRESS, "
                             "$RAY_ADDRESS, else the cluster `gcpo cluster up` started)")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="seconds to wait for the address to answer (default 5)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_address_argument(parser)
    parser.add_argument("--wait", action="store_true", help="follow the job's logs until it ends")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking URI for the job (required for a remote cluster unless "
                             "$MLFLOW_TRACKING_URI is set)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="checkpoints folder on storage the cluster's nodes share (trainer.output_dir)")
    parser.add_argument("--project", type=Path, default=Path.cwd(), metavar="DIR",
                        help="the project folder to ship (default: the current folder)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- gcpo COMMAND ...",
                        help="the gcpo command to run, after --")


def run(args: argparse.Namespace) -> int:
    from gcpo.cluster import jobs
    from gcpo.cluster.runtime import ClusterError
    from gcpo.commands import build_parser

    parser = build_parser()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        url = jobs.resolve_address(args.address)
        jobs.entrypoint(command, parser, tracking_uri=None, output_dir=None)  # refuse a bad command before connecting
        client = jobs.connect(url, timeout_s=args.timeout)
        project = args.project.resolve()
        uri, output_dir = jobs.default_locations(url, project, args.tracking_uri, args.output_dir)
        entry = jobs.entrypoint(command, parser, tracking_uri=uri, output_dir=output_dir)
        job_id = jobs.submit(client, entry, command=command, project=project, tracking_uri=uri)
        print(f"submitted job {job_id} to {url}: {shlex.join(command)}")
        print(f"  MLflow: {uri}" + (f"   checkpoints: {output_dir}" if output_dir else ""))
        print(f"follow it:  gcpo jobs logs {job_id} --follow --address {url}")
        print(f"stop it:    gcpo jobs stop {job_id} --address {url}")
        if not args.wait:
            return 0
        state = jobs.follow(client, job_id)
    except ClusterError as e:
        print(f"gcpo submit: {e}", file=sys.stderr)
        return 1
    print(f"\njob {job_id}: {state}")
    return 0 if state == "SUCCEEDED" else 1
