#!/opt/distshot/bin/python
"""`distshot-make-bucket BUCKET`: waits for the S3 store (AWS_ENDPOINT_URL and the usual
AWS_* variables) to answer, at most DISTSHOT_WAIT_TIMEOUT seconds (120), then creates BUCKET
unless it exists. The entry point runs it when DISTSHOT_MAKE_BUCKET names a bucket:
`worker` and `dispatch` refuse to start without theirs."""

from __future__ import annotations

import os
import sys
import time

import boto3
from botocore.config import Config


def main(bucket: str) -> int:
    s3 = boto3.client("s3", config=Config(connect_timeout=2, retries={"max_attempts": 1}))
    deadline = time.monotonic() + float(os.environ.get("DISTSHOT_WAIT_TIMEOUT", "120"))
    while True:
        try:
            names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                print(f"distshot-make-bucket: the S3 store did not answer: {exc}", file=sys.stderr)
                return 2
            time.sleep(1)
    if bucket in names:
        print(f"bucket {bucket} exists")
    else:
        s3.create_bucket(Bucket=bucket)
        print(f"bucket {bucket} created")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: distshot-make-bucket BUCKET")
    sys.exit(main(sys.argv[1]))
