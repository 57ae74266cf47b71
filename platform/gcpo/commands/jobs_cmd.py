"""`gcpo jobs list | logs ID [--follow] | stop ID`: the jobs of a Ray cluster (see `gcpo.cluster.jobs`)."""

from __future__ import annotations

import argparse
import sys
import time

from gcpo.commands.submit_cmd import add_address_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_address_argument(sub.add_parser("list", help="every job: id, status, start time, command"))
    logs = sub.add_parser("logs", help="a job's logs")
    logs.add_argument("job_id", metavar="ID")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    add_address_argument(logs)
    stop = sub.add_parser("stop", help="stop a job and wait until it has stopped")
    stop.add_argument("job_id", metavar="ID")
    add_address_argument(stop)


def _list(client) -> int:
    rows = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
    print(f"{'job id':<30} {'status':<10} {'started':<19} command")
    for job in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((job.start_time or 0) / 1000))
        command = (job.metadata or {}).get("gcpo_command", job.entrypoint)
        print(f"{job.submission_id or job.job_id:<30} {job.status.value:<10} {started:<19} {command}")
    return 0


def _stop(client, job_id: str) -> int:
    from gcpo.cluster import jobs

    if jobs.status(client, job_id) in jobs.TERMINAL:
        print(f"job {job_id} already ended: {jobs.status(client, job_id)}")
        return 0
    client.stop_job(job_id)
    state = jobs.wait(client, job_id, timeout_s=60)
    print(f"job {job_id}: {state}")
    return 0 if state in jobs.TERMINAL else 1


def run(args: argparse.Namespace) -> int:
    from gcpo.cluster import jobs
    from gcpo.cluster.runtime import ClusterError

    try:
        client = jobs.connect(jobs.resolve_address(args.address), timeout_s=args.timeout)
        if args.action == "list":
            return _list(client)
        if args.action == "stop":
            return _stop(client, args.job_id)
        if args.follow:
            state = jobs.follow(client, args.job_id)
            print(f"\njob {args.job_id}: {state}", file=sys.stderr)
            return 0
        jobs.status(client, args.job_id)
        print(client.get_job_logs(args.job_id), end="")
        return 0
    except ClusterError as e:
        print(f"gcpo jobs {args.action}: {e}", file=sys.stderr)
        return 1
