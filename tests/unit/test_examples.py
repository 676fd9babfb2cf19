"""The deployable examples under examples/ stay valid: configs load and pass the real CLI's
`config validate`, the SAM template keeps its least-privilege shape, and the Kubernetes,
systemd and cron files parse and keep their safety settings. No network.
"""

from __future__ import annotations

import configparser
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rotator.config import load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONFIGS = sorted(EXAMPLES.rglob("*.toml"))
TEMPLATE = EXAMPLES / "lambda" / "template.yaml"
K8S = sorted((EXAMPLES / "kubernetes").glob("*.yaml"))
UNITS = sorted((EXAMPLES / "systemd").glob("rotator.*"))
GUARDED_SERVICES = ("secretsmanager:", "dynamodb:", "kms:")


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags (!Ref, !Sub, ...) into dicts."""


def _cfn_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def _template() -> dict[str, Any]:
    doc = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    assert isinstance(doc, dict)
    return doc


def _resources(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in _template()["Resources"].items() if v["Type"] == kind}


def _function() -> dict[str, Any]:
    [function] = _resources("AWS::Serverless::Function").values()
    return function


def _statements() -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in _function()["Properties"]["Policies"]:
        assert isinstance(policy, dict), "inline policy documents only, no broad managed ones"
        statements.extend(policy["Statement"])
    return statements


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VAULT_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # fake: nothing is called
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
        MOTHERDUCK_ADMIN_TOKEN="not-a-real-token",
        PYTHONPATH=str(ROOT),
    )
    env.pop("ROTATOR_CONFIG", None)
    return env


def _validate_cli(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rotator.cli", "--config", str(path), "config", "validate"],
        cwd=tmp_path,
        env=_cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_expected_config_is_present() -> None:
    """The five documented example configs exist, so the glob below cannot silently shrink."""
    names = {p.name for p in (EXAMPLES / "config").glob("*.toml")}
    assert {"file.toml", "vault.toml", "aws.toml", "multi-backend.toml", "lambda.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_config_loads(path: Path) -> None:
    """Each example config is accepted by rotator.config.load_config with at least one account."""
    config = load_config(path)
    assert config.accounts
    assert config.base_dir == path.parent


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_config_validates_with_the_cli(path: Path, tmp_path: Path) -> None:
    """`rotator config validate` (backends through entry points, checks built) exits 0."""
    done = _validate_cli(path, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": ok (" in done.stdout


def test_kubernetes_configmap_config_validates(tmp_path: Path) -> None:
    """The rotator.toml embedded in the Kubernetes ConfigMap passes load_config and the CLI."""
    path = tmp_path / "rotator.toml"
    path.write_text(_k8s_config_text())
    assert load_config(path).accounts
    done = _validate_cli(path, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def _k8s_docs() -> list[dict[str, Any]]:
    return [d for p in K8S for d in yaml.safe_load_all(p.read_text()) if d]


def _k8s_config_text() -> str:
    [config_map] = [
        d
        for d in _k8s_docs()
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rotator-config"
    ]
    text = config_map["data"]["rotator.toml"]
    assert isinstance(text, str)
    return text


def test_sam_template_function_shape() -> None:
    """The function runs python3.12 with the importable handler rotator.aws_lambda.handler."""
    template = _template()
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    function = _function()
    props = {**template.get("Globals", {}).get("Function", {}), **function["Properties"]}
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == "rotator.aws_lambda.handler"
    module, _, attr = props["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))
    assert props["Environment"]["Variables"]["ROTATOR_CONFIG"]
    schedules = [e for e in props["Events"].values() if e["Type"] in ("Schedule", "ScheduleV2")]
    assert schedules, "an EventBridge schedule drives the scheduled path"


def test_sam_template_packages_a_config_that_validates(tmp_path: Path) -> None:
    """ROTATOR_CONFIG names the file build.sh packages, and that file is a valid DynamoDB config."""
    packaged = _function()["Properties"]["Environment"]["Variables"]["ROTATOR_CONFIG"]
    assert not Path(packaged).is_absolute()
    build = (EXAMPLES / "lambda" / "build.sh").read_text()
    assert f'"$package/{packaged}"' in build, "build.sh must copy the config to that path"
    source = EXAMPLES / packaged  # build.sh mirrors examples/<path> into the package root
    assert f"$repo/examples/{packaged}" in build
    config = load_config(source)
    assert config.state.store == "dynamodb"
    assert config.motherduck.admin_token_secret_id
    assert all(any(b.type == "aws-secrets-manager" for b in a.backends) for a in config.accounts)
    assert _validate_cli(source, tmp_path).returncode == 0


def test_sam_template_iam_is_least_privilege() -> None:
    """Secrets Manager, DynamoDB and KMS statements name their resources and never use "*"."""
    guarded = [
        s
        for s in _statements()
        if any(str(a).startswith(GUARDED_SERVICES) for a in _listed(s["Action"]))
    ]
    assert guarded
    for statement in _statements():
        actions = [str(a) for a in _listed(statement["Action"])]
        assert statement["Effect"] == "Allow"
        assert not any(a.endswith("*") for a in actions), actions
        if any(a.startswith(GUARDED_SERVICES) for a in actions):
            resources = _listed(statement["Resource"])
            assert resources and "*" not in resources, statement
            assert not any(isinstance(r, str) and "*" in r for r in resources), statement
    granted = {str(a) for s in _statements() for a in _listed(s["Action"])}
    assert granted <= {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:TagResource",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:TransactWriteItems",
        "dynamodb:ConditionCheckItem",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }, granted


def test_sam_template_kms_is_via_secrets_manager_only() -> None:
    """KMS use is limited to the given key and to calls made through Secrets Manager."""
    [kms] = [s for s in _statements() if str(_listed(s["Action"])[0]).startswith("kms:")]
    assert kms["Resource"] == {"Ref": "SecretsKmsKeyArn"}
    via = kms["Condition"]["StringEquals"]["kms:ViaService"]
    assert "secretsmanager." in str(via)


def test_sam_template_dynamodb_only_on_its_table() -> None:
    """DynamoDB actions apply to the template's own state table, which has TTL on `ttl`."""
    [ddb] = [s for s in _statements() if str(_listed(s["Action"])[0]).startswith("dynamodb:")]
    [(name, table)] = _resources("AWS::DynamoDB::Table").items()
    assert ddb["Resource"] == {"Fn::GetAtt": [name, "Arn"]}
    ttl = table["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "ttl", "Enabled": True}
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]


def test_sam_template_invoke_permission_and_rotation_schedules() -> None:
    """Only secretsmanager.amazonaws.com of this account may invoke; each secret has a schedule."""
    [permission] = _resources("AWS::Lambda::Permission").values()
    props = permission["Properties"]
    assert props["Principal"] == "secretsmanager.amazonaws.com"
    assert props["Action"] == "lambda:InvokeFunction"
    assert props["SourceAccount"] == {"Ref": "AWS::AccountId"}
    schedules = _resources("AWS::SecretsManager::RotationSchedule")
    managed = {
        r["Ref"]
        for s in _statements()
        if "secretsmanager:PutSecretValue" in _listed(s["Action"])
        for r in _listed(s["Resource"])
    }
    assert {s["Properties"]["SecretId"]["Ref"] for s in schedules.values()} == managed
    params = _template()["Parameters"]
    for schedule in schedules.values():
        assert (
            schedule["Properties"]["RotationLambdaARN"]["Fn::GetAtt"][0] in _template()["Resources"]
        )
        assert schedule["Properties"]["RotateImmediatelyOnUpdate"] is False
    for name in (*managed, "AdminTokenSecretArn", "SecretsKmsKeyArn"):
        assert name in params


def test_build_script_installs_only_the_aws_extra() -> None:
    """build.sh is strict bash, installs rotator[aws] for Lambda's platform and zips CodeUri."""
    script = (EXAMPLES / "lambda" / "build.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    assert re.search(r"--target\b", script) and "[aws]" in script
    assert not re.search(r"\[(vault|duckdb|postgres)", script)
    assert "--python-version 3.12" in script
    code_uri = _function()["Properties"]["CodeUri"]
    assert code_uri == "build/rotator-lambda.zip" and code_uri.split("/")[-1] in script
    assert os.access(EXAMPLES / "lambda" / "build.sh", os.X_OK)


def test_kubernetes_manifests_parse_and_cronjob_is_safe() -> None:
    """The manifests parse; the CronJob forbids overlap and runs non-root on a read-only root fs."""
    docs = [d for p in K8S for d in yaml.safe_load_all(p.read_text()) if d]
    assert all({"apiVersion", "kind", "metadata"} <= d.keys() for d in docs)
    [cronjob] = [d for d in docs if d["kind"] == "CronJob"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    [token] = [e for e in container["env"] if e["name"] == "MOTHERDUCK_ADMIN_TOKEN"]
    assert "secretKeyRef" in token["valueFrom"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts.keys() == volumes.keys()
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] in claims


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_systemd_units_parse_with_hardening_and_timer() -> None:
    """rotator.service is a hardened oneshot with an EnvironmentFile; the timer is daily-ish."""
    assert {p.name for p in UNITS} == {"rotator.service", "rotator.timer"}
    service = _unit(EXAMPLES / "systemd" / "rotator.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["EnvironmentFile"].startswith("/")
    assert service["ReadWritePaths"] and service["StateDirectory"] == "rotator"
    assert " rotate " in service["ExecStart"] and "--config" in service["ExecStart"]
    assert "flock" not in service["ExecStart"]
    timer = _unit(EXAMPLES / "systemd" / "rotator.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["RandomizedDelaySec"]
    assert timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_cron_wrapper_is_strict_and_logs_to_syslog() -> None:
    """The cron wrapper loads the admin token from a root-only file and logs via logger."""
    wrapper = (EXAMPLES / "cron" / "rotator-cron.sh").read_text()
    assert "set -euo pipefail" in wrapper and "MOTHERDUCK_ADMIN_TOKEN" in wrapper
    assert "logger -t" in wrapper and "flock" not in wrapper.replace("No flock", "")
    assert os.access(EXAMPLES / "cron" / "rotator-cron.sh", os.X_OK)
    done = subprocess.run(["bash", "-n", str(EXAMPLES / "cron" / "rotator-cron.sh")], check=False)
    assert done.returncode == 0
    cron = (EXAMPLES / "cron" / "rotator.cron").read_text()
    [line] = [ln for ln in cron.splitlines() if ln and not ln.startswith("#") and "=" not in ln]
    fields = line.split()
    assert len(fields) >= 7 and fields[5] == "root" and fields[6].endswith("rotator-cron.sh")


def test_dockerignore_is_an_allow_list() -> None:
    """The build context is an allow-list: no .venv, .git, demo-run/ or state can be sent."""
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything first, then allow"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "rotator", "backends"}
    for leaky in (".venv", ".git", "demo-run", ".rotator-state", "tests"):
        assert leaky not in allowed


def test_dockerfile_leaves_no_sources_venv_or_secret_in_a_layer() -> None:
    """Two stages: sources only in the build stage; the final one installs via a bind mount."""
    text = (EXAMPLES / "kubernetes" / "Dockerfile").read_text()
    steps = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    stages = [i for i, ln in enumerate(steps) if ln.startswith("FROM ")]
    assert len(stages) == 2, "a build stage and a final stage"
    final = steps[stages[1] :]
    assert not any(ln.startswith(("COPY", "ADD")) for ln in final), final
    assert any("--mount=type=bind,from=build" in ln for ln in final)
    copies = [ln for ln in steps if ln.startswith(("COPY", "ADD"))]
    assert copies and not any(" . " in f"{ln} " or ".venv" in ln for ln in copies), copies
    for ln in steps:
        if ln.startswith(("ENV", "ARG")):
            assert not re.search(r"TOKEN|SECRET|PASSWORD|KEY", ln, re.IGNORECASE), ln
    assert "venv" not in " ".join(steps).lower()


def test_kubernetes_manifest_objects_all_exist() -> None:
    """Every ConfigMap, PVC and ServiceAccount the CronJob uses is in the manifest; the only
    Secret is the admin token, created by hand as the header says (never in a file)."""
    docs = _k8s_docs()
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    [cronjob] = [d for d in docs if d["kind"] == "CronJob"]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert ("ServiceAccount", pod["serviceAccountName"]) in have
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in have, volume
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            assert ("PersistentVolumeClaim", claim) in have, volume
        assert "secret" not in volume, "mount no Secret the manifest does not create"
    header = (EXAMPLES / "kubernetes" / "rotator.yaml").read_text()
    for container in pod["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert f"create secret generic {ref['name']}" in header, ref


def _job_backoff(retries: int) -> float:
    """Kubernetes' pod-failure backoff before each retry: 10s doubling, capped at 6 minutes."""
    return sum(min(10.0 * 2**i, 360.0) for i in range(retries))


def test_kubernetes_retry_policy_outlasts_the_lease(tmp_path: Path) -> None:
    """A killed pod's lease expires before the Job's last retry, inside activeDeadlineSeconds."""
    path = tmp_path / "rotator.toml"
    path.write_text(_k8s_config_text())
    lease = load_config(path).defaults.lease_ttl.total_seconds()
    [cronjob] = [d for d in _k8s_docs() if d["kind"] == "CronJob"]
    job = cronjob["spec"]["jobTemplate"]["spec"]
    backoff = _job_backoff(job["backoffLimit"])
    assert backoff > lease, f"all {job['backoffLimit']} retries happen inside the {lease}s lease"
    assert job["activeDeadlineSeconds"] > backoff + lease
    assert job["activeDeadlineSeconds"] <= cronjob["spec"]["startingDeadlineSeconds"] + 86400
    rules = job["podFailurePolicy"]["rules"]
    no_retry = {v for r in rules if r["action"] == "FailJob" for v in r["onExitCodes"]["values"]}
    assert 3 not in no_retry and {1, 2, 4} <= no_retry


def test_systemd_unit_allows_what_the_file_backend_needs() -> None:
    """~@privileged would kill a chown: @chown is allowed again after it, and the unit is in
    the consumers' group so a rotated file can be given its group back."""
    lines = (EXAMPLES / "systemd" / "rotator.service").read_text().splitlines()
    filters = [ln.split("=", 1)[1] for ln in lines if ln.startswith("SystemCallFilter=")]
    assert "~@privileged" in filters and "@chown" in filters
    assert filters.index("@chown") > filters.index("~@privileged")
    service = _unit(EXAMPLES / "systemd" / "rotator.service")["Service"]
    assert service["SupplementaryGroups"]
    assert service["CapabilityBoundingSet"] == ""
