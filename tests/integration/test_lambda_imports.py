"""What a Lambda cold start loads for a scheduled pass with nothing due: modules, not time.

A fresh interpreter imports `rotator.aws_lambda` and handles one scheduled event (state in
DynamoDB on moto, one adopted account not due), then prints `sys.modules`. Drawing for a
person (rich, pygments), httpx's command-line client (click), async back-ends (anyio),
Prometheus and boto3 itself (the clients come from botocore) must not be among them, nor
pydantic (the config is checked without it), nor httpx (MotherDuck's reads go over
botocore's urllib3); the admin-token probe must still be made, before anything else is
asked of MotherDuck.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rotator import aws_lambda
from rotator.state.dynamodb import create_table
from tests.support.simulator_fixtures import unique_username

CHILD = """
import json, sys
import rotator.aws_lambda as m
out = m.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
print(json.dumps({"out": out, "modules": sorted(sys.modules)}))
"""
NOT_LOADED = {
    "rich", "rich.console", "rich.traceback", "pygments", "pygments.lexers", "click",
    "httpx._main", "anyio", "prometheus_client", "boto3", "s3transfer",
}
# What only an account that is due needs (the rotation's steps, the file state store, httpx
# for MotherDuck writes: reads go over botocore's urllib3, rotator/motherduck/reads.py, and
# the checks, only built for a rotation), and asyncio's event loop (only structlog's async
# loggers would use it; asyncio stays deferred).
NOT_RUN_WHEN_NOTHING_IS_DUE = {
    "rotator.engine.runner", "rotator.engine.forward", "rotator.engine.revoking",
    "rotator.engine.rollback", "rotator.state.file", "asyncio.base_events",
    "httpx", "httpcore", "rotator.motherduck.client", "rotator.verify.checks",
}


@pytest.mark.parametrize("backend", ["file", "aws-secrets-manager"])
def test_scheduled_noop_cold_start_loads_only_what_it_uses(
    backend: str, aws: Any, simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = unique_username()
    secret, token_id = simulator.seed(user)
    table = f"rotator-{user}"
    create_table(table, region=aws.region, endpoint_url=aws.endpoint_url)
    if backend == "file":
        backend_table = f'  type = "file"\n  path = "{tmp_path / "s.json"}"\n'
    else:  # what a Lambda deployment uses; checked without pydantic as well
        aws.client("secretsmanager").create_secret(Name=f"md/{user}", SecretString=secret)
        backend_table = (
            f'  type = "aws-secrets-manager"\n  secret_id = "md/{user}"\n'
            f'  region = "{aws.region}"\n  endpoint_url = "{aws.endpoint_url}"\n'
        )
    config = (
        f'[motherduck]\napi_url = "{simulator.url}"\nadmin_token_env = "TEST_MD_ADMIN"\n'
        f'[state]\nstore = "dynamodb"\ntable = "{table}"\nregion = "{aws.region}"\n'
        f'[[accounts]]\nusername = "{user}"\n'
        f"  [[accounts.backends]]\n{backend_table}"
    )
    monkeypatch.setenv("ROTATOR_CONFIG", config)
    monkeypatch.setenv("TEST_MD_ADMIN", simulator.admin_token)
    aws_lambda.reset()
    try:
        aws_lambda._engine().adopt(user, token_id)
    finally:
        aws_lambda.reset()
    simulator.clear_requests()

    env = {**aws.subprocess_env(), "ROTATOR_CONFIG": config,
           "TEST_MD_ADMIN": simulator.admin_token}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])  # after the EMF lines

    assert answer["out"] == {
        "results": [{"account": user, "result": "not_due", "message": answer["out"]["results"][0]
                     ["message"]}],
        "failed": 0,
    }
    modules = set(answer["modules"])
    assert not modules & NOT_LOADED, sorted(modules & NOT_LOADED)
    assert not modules & NOT_RUN_WHEN_NOTHING_IS_DUE, sorted(modules & NOT_RUN_WHEN_NOTHING_IS_DUE)
    assert {"botocore", "urllib3", "structlog", "rotator.config.fast"} <= modules
    # A valid common config is checked without pydantic (rotator/config/fast.py), and a pass
    # with nothing due builds no backend model: pydantic is not loaded at all.
    assert "pydantic" not in modules
    routes = [r["route"] for r in simulator.requests()]
    assert routes[0] == "active_accounts", routes  # the admin-token probe comes first
    assert routes.count("active_accounts") == 1, routes
