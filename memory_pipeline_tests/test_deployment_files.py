"""The deployment files, checked as far as this machine allows (no Docker engine, no cluster).

The Dockerfile is linted with hadolint and the Kubernetes manifests validated against the API
schemas (kubernetes-validate); both come from PyPI with the dev dependencies. The Helm values
are checked for what our code relies on; their validation against the chart's own schema is
done by hand (docs/deployment.md says how and with which chart version).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from memory_pipeline.settings import Settings, env_name

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
MANIFESTS = sorted((REPO_ROOT / "deploy" / "k8s").glob("*.yaml"))
HELM_VALUES = REPO_ROOT / "deploy" / "helm" / "values.yaml"


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(path).exists():
        pytest.fail(f"{name} is missing: install the dev dependencies (pip install -e '.[dev]')")
    return path


def test_the_dockerfile_passes_hadolint():
    out = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_image_pins_the_makefiles_torch_and_runs_the_code_location_as_non_root():
    text = DOCKERFILE.read_text()
    pin = re.search(r"^TORCH_PIN := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert pin and pin.group(1) in text
    assert "download.pytorch.org/whl/cpu" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert "HF_HUB_OFFLINE=1" in text
    assert '"memory_pipeline.definitions", "--attribute", "defs"' in text


def test_the_kubernetes_manifests_validate_against_the_api_schemas():
    assert MANIFESTS
    out = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_setting_the_manifests_name_is_a_real_setting():
    known = {env_name(name) for name in Settings.model_fields}
    named: set[str] = set()
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            for section in ("data", "stringData"):
                named.update(k for k in (doc or {}).get(section, {}) if k.startswith("MEMORY_"))
    assert named and named <= known, named - known


def test_the_helm_values_serve_our_code_location_and_limit_runs_per_tenant():
    values = yaml.safe_load(HELM_VALUES.read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "memory_pipeline.definitions"
    assert args[args.index("--attribute") + 1] == "defs"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in (queue["tagConcurrencyLimits"])
