"""Start-up helpers: a deferred module runs at its first use, and botocore's models load
without the scan of every service (rotator/util/startup.py, rotator/util/awsloader.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = """
import sys
from rotator.util.startup import defer_import
defer_import("deferred_mod")
import deferred_mod
import deferred_mod as again
print("bound", "ran" if "RAN" in sys.__dict__ else "not run", again is deferred_mod)
print("value", deferred_mod.VALUE, "ran" if "RAN" in sys.__dict__ else "not run")
from deferred_mod import VALUE
import deferred_mod.sub
print("sub", deferred_mod.sub.SUB, sys.modules["deferred_mod"] is deferred_mod, VALUE)
defer_import("no_such_module_anywhere")
print("missing", "no_such_module_anywhere" in sys.modules)
"""


def test_a_deferred_module_runs_at_its_first_attribute_use(tmp_path: Path) -> None:
    package = tmp_path / "deferred_mod"
    package.mkdir()
    (package / "__init__.py").write_text("import sys\nsys.RAN = True\nVALUE = 42\n")
    (package / "sub.py").write_text("SUB = 'sub'\n")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD)], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "bound not run True",
        "value 42 ran",
        "sub sub True 42",
        "missing False",
    ]


THREADS = """
import sys, threading
from rotator.util.startup import defer_import
sys.STARTED, sys.GATE = threading.Event(), threading.Event()
defer_import("slow_mod")
import slow_mod
got = []
first = threading.Thread(target=lambda: got.append(("first", slow_mod.VALUE)))
first.start()
sys.STARTED.wait(30)  # slow_mod's code is running in `first`, held at its gate
second = threading.Thread(target=lambda: got.append(("second", slow_mod.VALUE)))
second.start()
sys.GATE.set()
first.join(30)
second.join(30)
print(sorted(got))
"""


def test_a_thread_touching_a_deferred_module_while_it_runs_waits_for_it(tmp_path: Path) -> None:
    (tmp_path / "slow_mod.py").write_text(
        "import sys\nsys.STARTED.set()\nsys.GATE.wait(30)\nVALUE = 7\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(THREADS)], cwd=tmp_path, capture_output=True,
        text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('first', 7), ('second', 7)]", done.stderr


@pytest.mark.parametrize("service", ["dynamodb", "secretsmanager"])
def test_direct_loader_loads_what_botocore_loads(service: str) -> None:
    botocore_session = pytest.importorskip("botocore.session")
    from rotator.util.awsloader import direct_loader

    own = botocore_session.get_session().get_component("data_loader")
    direct = direct_loader(own)
    for type_name in ("service-2", "endpoint-rule-set-1"):
        assert direct.load_service_model(service, type_name) == own.load_service_model(
            service, type_name
        )
    assert direct.search_paths == own.search_paths


def test_direct_loader_refuses_an_unknown_service_as_botocore_does() -> None:
    pytest.importorskip("botocore.session")
    from botocore.exceptions import UnknownServiceError

    from rotator.util.startup import aws_client

    with pytest.raises(UnknownServiceError, match="dynamodb"):  # the known ones are named
        aws_client("no-such-service", region="us-east-1")
