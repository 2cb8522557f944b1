"""Schemathesis against the served OpenAPI schema: no 5xx, no answer outside the schema.

The service and schemathesis run in a network namespace of their own with only loopback:
generated URLs (any host name) cannot send a packet or a DNS query off the machine. The
service uses the null engine (no browser: the API is under test, not the captures).

Not checked: whether every schema-valid request is accepted. Options have rules across
fields (quality only with jpeg or webp, a selector or a clip) that JSON Schema does not
express; such requests get a 422 that names the field, which the checks below accept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    assert shutil.which("unshare"), "util-linux's unshare is needed to isolate the run"
    st = Path(sys.executable).with_name("st")
    script = f"""
set -e
ip link set lo up
{sys.executable} -m distshot.cli serve --engine null --allow-private --port 8899 \\
  --state-dir {tmp_path}/state --storage {tmp_path}/shots --max-queue 1000 \\
  > {tmp_path}/serve.log 2>&1 &
serve=$!
for i in $(seq 1 100); do
  {sys.executable} -c 'import httpx; httpx.get("http://127.0.0.1:8899/healthz")' \
    2>/dev/null && break
  sleep 0.2
done
status=0
{st} run http://127.0.0.1:8899/openapi.json -n 10 --checks {CHECKS} \\
  --request-timeout 30 --seed 1 || status=$?
kill -TERM $serve; wait $serve || true
exit $status
"""
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    log = (tmp_path / "serve.log").read_text()
    (tmp_path / "schemathesis.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Traceback" not in log, log[-4000:]
    assert "Test cases:" in result.stdout
