"""Which configured account a Secrets Manager rotation event belongs to (no AWS calls).

Only the config maps a secret to an account; a `rotator:account` tag can only agree with
it (or choose among accounts that all name the secret).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rotator.aws_lambda import account_for_secret
from rotator.config import parse_config
from rotator.engine.workflow import Engine
from rotator.errors import ConfigError
from rotator.state.file import FileStore

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/md/svc_a-Ab12Cd"
CONFIG = """
[[accounts]]
username = "svc_a"
  [[accounts.backends]]
  type = "aws-secrets-manager"
  secret_id = "{a}"
  region = "eu-west-1"
  [[accounts.backends]]
  type = "file"
  path = "a.json"
[[accounts]]
username = "svc_b"
  [[accounts.backends]]
  type = "aws-secrets-manager"
  secret_id = "{b}"
  region = "eu-west-1"
"""


def engine(tmp_path: Path, a: str = "prod/md/svc_a", b: str = "prod/md/svc_b") -> Engine:
    config = parse_config(CONFIG.format(a=a, b=b), base_dir=tmp_path)
    return Engine(config, None, FileStore(tmp_path / "state"))


def meta(arn: str = ARN, name: str = "prod/md/svc_a", tag: str | None = None) -> dict[str, Any]:
    tags = [{"Key": "rotator:account", "Value": tag}] if tag else []
    return {"ARN": arn, "Name": name, "Tags": tags}


class TestAccountForSecret:
    @pytest.mark.parametrize(
        "secret_id",
        [
            "prod/md/svc_a",
            ARN,
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/md/svc_a",
        ],
    )
    def test_config_names_it(self, tmp_path: Path, secret_id: str) -> None:
        """A backend's secret_id as name, full ARN or partial ARN maps the secret."""
        account, label = account_for_secret(engine(tmp_path, a=secret_id), meta())
        assert account.username == "svc_a"
        assert label.startswith("aws-secrets-manager:eu-west-1:")

    def test_a_tag_alone_maps_nothing(self, tmp_path: Path) -> None:
        """An unconfigured secret tagged for a configured account is refused."""
        other = ARN.replace("svc_a-Ab12Cd", "svc_z-Zz99Yy")
        with pytest.raises(ConfigError, match="belongs to no configured account"):
            account_for_secret(engine(tmp_path), meta(other, "prod/md/svc_z", tag="svc_a"))

    def test_same_name_in_another_region_is_not_ours(self, tmp_path: Path) -> None:
        """A name-configured secret matches only in the backend's region."""
        elsewhere = ARN.replace("eu-west-1", "us-east-1")
        with pytest.raises(ConfigError, match="belongs to no configured account"):
            account_for_secret(engine(tmp_path), meta(elsewhere))

    def test_tag_must_agree(self, tmp_path: Path) -> None:
        """A tag naming another account than the config is refused; an agreeing one is fine."""
        with pytest.raises(ConfigError, match="tagged rotator:account=svc_b"):
            account_for_secret(engine(tmp_path), meta(tag="svc_b"))
        assert account_for_secret(engine(tmp_path), meta(tag="SVC_A"))[0].username == "svc_a"

    def test_tag_chooses_among_accounts_naming_the_secret(self, tmp_path: Path) -> None:
        """Two accounts naming one secret: refused without a tag, the tagged one with it."""
        both = engine(tmp_path, b="prod/md/svc_a")
        with pytest.raises(ConfigError, match="named by several accounts"):
            account_for_secret(both, meta())
        assert account_for_secret(both, meta(tag="svc_b"))[0].username == "svc_b"
