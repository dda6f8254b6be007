"""cluster/: the ray up files against Ray's own schema, the KubeRay manifests structurally,
and every `launch.py` command they (and docs/cluster.md) run against the real CLI parser."""
from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from causalmix import launch
from cluster import install_deps

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"
RAY_UP_FILES = [CLUSTER / "aws.yaml", CLUSTER / "gcp.yaml"]
KUBERAY = CLUSTER / "kuberay"
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
# `python launch.py SUB ...` or the console script `causalmix SUB ...` (the same parser).
LAUNCH_CALL = re.compile(r"(?:python3?\s+(?:\S*/)?launch\.py|(?<![\w./-])causalmix)\s+([^;'`&|\n]+)")


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def manifests() -> dict[str, dict]:
    """Every KubeRay/Kubernetes document, keyed by kind (one of each kind)."""
    docs = {}
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc["kind"] not in docs, f"{path}: second {doc['kind']}"
            docs[doc["kind"]] = doc
    return docs


def unbuilt(command: str) -> bool:
    """A sub-command whose module is still the not-built stub in this checkout."""
    return "not built yet" in launch.summary(command)


def parse_launch_calls(text: str, unbuilt_found: list | None = None) -> list[list[str]]:
    """Parse each `python launch.py SUB ...` (or `causalmix SUB ...`) in `text` with launch.py's own parser.

    Calls of sub-commands not built in this checkout are collected in `unbuilt_found`
    (when given) instead of parsed."""
    calls = []
    for match in LAUNCH_CALL.finditer(text):
        argv = shlex.split(match.group(1).replace("\\\n", " "))
        argv = [a for a in argv if a != "\\"]
        assert argv and argv[0] in launch.COMMANDS, f"unknown sub-command in: launch.py {match.group(1)}"
        if unbuilt_found is not None and unbuilt(argv[0]):
            unbuilt_found.append(argv[0])
            continue
        try:
            launch.build_parser().parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"launch.py does not accept: {shlex.join(argv)}") from exc
        calls.append(argv)
    return calls


# ---------------------------------------------------------------- ray up (AWS, GCP)

@pytest.fixture(scope="module")
def ray_schema():
    return json.loads(RAY_SCHEMA.read_text())


@pytest.mark.parametrize("path", RAY_UP_FILES, ids=lambda p: p.name)
def test_ray_up_file_validates_against_rays_schema(path, ray_schema):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load_yaml(path)
    jsonschema.validate(config, ray_schema)
    validate_config(config)
    # What `ray up` itself does: fill the provider's defaults, then validate again.
    validate_config(prepare_config(config))


def test_schema_validation_rejects_a_misspelt_node_type_field(ray_schema):
    config = load_yaml(CLUSTER / "aws.yaml")
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_l4"]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ray_schema)


@pytest.mark.parametrize("path", RAY_UP_FILES, ids=lambda p: p.name)
def test_ray_up_node_types(path):
    config = load_yaml(path)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "min_workers" not in head and "max_workers" not in head
    gpu_types = {name: t for name, t in types.items() if name.startswith("gpu_")}
    assert {"gpu_h100", "gpu_a100", "gpu_l4"} <= set(gpu_types)
    for name, node_type in gpu_types.items():
        assert node_type["min_workers"] == 0, f"{path.name}: {name} must scale from zero"
        assert 0 < node_type["max_workers"] <= config["max_workers"], f"{path.name}: {name} cap"
        assert "worker_setup_commands" not in node_type, "per-type commands would replace the CUDA install"
    if config["provider"]["type"] == "gcp":
        # GCP does not detect resources: a GPU type without "GPU" would never get a trial.
        for name, node_type in gpu_types.items():
            assert node_type["resources"].get("GPU", 0) >= 1, name
            assert node_type["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE", name


@pytest.mark.parametrize("path", RAY_UP_FILES, ids=lambda p: p.name)
def test_ray_up_installs_the_right_torch_and_matches_installed_ray(path):
    config = load_yaml(path)
    assert any("install_deps.py --torch cpu" in c for c in config["head_setup_commands"])
    assert any("install_deps.py --torch cuda" in c for c in config["worker_setup_commands"])
    assert not any("install_deps.py" in c for c in config["setup_commands"])
    version = ray.__version__
    assert config["docker"]["head_image"] == f"rayproject/ray:{version}-py311-cpu"
    assert config["docker"]["worker_image"] == f"rayproject/ray:{version}-py311-gpu"
    # The repository is mounted where the setup commands look for it.
    assert config["file_mounts"] == {"~/causalmix": "."}


def test_install_deps_takes_versions_from_pyproject():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [*project["dependencies"], *(d for extra in install_deps.CLUSTER_EXTRAS
                                        for d in project["optional-dependencies"][extra])]
    torch_spec = next(d for d in deps if d.startswith("torch"))
    cpu_torch, cpu_rest = install_deps.pip_commands("cpu")
    assert cpu_torch[-3:] == ["--index-url", install_deps.CPU_INDEX, torch_spec]
    assert sorted(cpu_rest[cpu_rest.index("--no-cache-dir") + 1:]) == sorted(d for d in deps if d != torch_spec)
    cuda_torch, cuda_rest = install_deps.pip_commands("cuda")
    assert "--index-url" not in cuda_torch and cuda_torch[-1] == torch_spec
    assert cuda_rest == cpu_rest
    tagged, _ = install_deps.pip_commands("cuda", "cu126")
    assert "https://download.pytorch.org/whl/cu126" in tagged


def test_install_deps_dry_run_prints_and_runs_nothing(capsys):
    assert install_deps.main(["--torch", "cpu", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(" -m pip install " in line for line in lines)
    with pytest.raises(SystemExit):
        install_deps.main(["--torch", "cpu", "--cuda-tag", "cu126"])


# ---------------------------------------------------------------- KubeRay

def test_manifest_kinds_and_api_versions():
    docs = manifests()
    assert set(docs) == {"RayCluster", "RayJob", "RayService", "PersistentVolumeClaim"}
    for kind in ("RayCluster", "RayJob", "RayService"):
        assert docs[kind]["apiVersion"] == "ray.io/v1", kind
        assert docs[kind]["metadata"]["name"], kind
    assert docs["PersistentVolumeClaim"]["apiVersion"] == "v1"
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


def check_cluster_spec(spec: dict, claim: str, where: str, gpu_groups: bool) -> None:
    assert spec["rayVersion"] == ray.__version__, where
    assert spec["enableInTreeAutoscaling"] is True, where
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict), where
    head_container = head["template"]["spec"]["containers"][0]
    assert head_container["image"] and head_container["name"] == "ray-head", where
    assert {p["containerPort"] for p in head_container["ports"]} >= {6379, 8265, 10001}, where
    groups = spec["workerGroupSpecs"]
    assert groups, where
    for group in groups:
        name = f"{where}: worker group {group['groupName']}"
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        assert isinstance(group["rayStartParams"], dict), name
        container = group["template"]["spec"]["containers"][0]
        assert container["image"], name
        limits = container["resources"]["limits"]
        if gpu_groups:
            assert group["minReplicas"] == 0, f"{name} must scale from zero"
            assert limits["nvidia.com/gpu"] == "1", name
            assert container["resources"]["requests"]["nvidia.com/gpu"] == "1", name
            assert container["image"].endswith("-gpu"), name
    for pod in [head["template"]["spec"], *(g["template"]["spec"] for g in groups)]:
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v}
        assert claims == {claim}, where
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert "/data" in mounts, where


def test_raycluster_has_an_autoscaling_gpu_group():
    docs = manifests()
    check_cluster_spec(docs["RayCluster"]["spec"], docs["PersistentVolumeClaim"]["metadata"]["name"],
                       "RayCluster", gpu_groups=True)


# The RayJob API (ray.io/v1) of current KubeRay, written down from its published RayJobSpec
# (ray-operator/apis/ray/v1/rayjob_types.go) and the checks of ValidateRayJobSpec
# (ray-operator/controllers/ray/utils/validation.go) after ray-project/kuberay#4527 (February
# 2026), which rejects backoffLimit > 0 together with clusterSelector.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint",
    "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
    "entrypointNumGpus", "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule",
}
RAYJOB_SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}


def rayjob_violations(spec: dict) -> list[str]:
    """Why KubeRay would reject this RayJob spec, or would not retry it as the docs say."""
    found = [f"unknown field spec.{k}" for k in sorted(set(spec) - RAYJOB_SPEC_FIELDS)]
    mode = spec.get("submissionMode", "K8sJobMode")
    backoff = spec.get("backoffLimit", 0)
    selector = spec.get("clusterSelector") or {}
    if mode not in RAYJOB_SUBMISSION_MODES:
        found.append(f"submissionMode {mode!r}")
    if not selector and spec.get("rayClusterSpec") is None:
        found.append("one of rayClusterSpec or clusterSelector must be set")
    if selector:
        if not selector.get("ray.io/cluster"):
            found.append("clusterSelector needs ray.io/cluster")
        if mode == "SidecarMode":
            found.append("clusterSelector is not supported in SidecarMode")
        if backoff > 0:
            found.append("backoffLimit > 0 with clusterSelector (a retry would delete the selected cluster)")
        if spec.get("suspend"):
            found.append("suspend with clusterSelector")
    if mode == "InteractiveMode" and backoff > 0:
        found.append("backoffLimit > 0 with InteractiveMode")
    if not isinstance(backoff, int) or backoff < 0:
        found.append(f"backoffLimit {backoff!r} must be a non-negative integer")
    if spec.get("ttlSecondsAfterFinished", 0) < 0:
        found.append("ttlSecondsAfterFinished < 0")
    if spec.get("ttlSecondsAfterFinished", 0) > 0 and not spec.get("shutdownAfterJobFinishes"):
        found.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true")
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        found.append("suspend needs shutdownAfterJobFinishes: true")
    try:
        yaml.safe_load(spec.get("runtimeEnvYAML", "") or "{}")
    except yaml.YAMLError:
        found.append("runtimeEnvYAML is not YAML")
    return found


def test_rayjob_is_a_spec_kuberay_accepts_and_retries_a_resumable_sweep():
    docs = manifests()
    job = docs["RayJob"]["spec"]
    assert rayjob_violations(job) == []
    # what docs/cluster.md promises: retries, each on a new cluster of the same spec, resuming
    assert job["backoffLimit"] >= 1 and "clusterSelector" not in job
    assert job["rayClusterSpec"] == docs["RayCluster"]["spec"], "rayjob-sweep.yaml's cluster drifted"
    calls = parse_launch_calls(job["entrypoint"])
    assert [c[0] for c in calls] == ["sweep", "sweep"]
    resume, fresh = calls
    assert "--resume" in resume and "--resume" not in fresh
    out = {c[c.index("--out") + 1] for c in calls}
    assert len(out) == 1 and f"-f {out.pop()}/" in job["entrypoint"], "resume must test the same RUN_DIR"
    docs_text = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
    assert "backoffLimit" in docs_text and "clusterSelector" in docs_text


def test_rayjob_rules_catch_what_kuberay_rejects():
    selected = {"clusterSelector": {"ray.io/cluster": "causalmix"}, "entrypoint": "x", "backoffLimit": 2}
    assert any("clusterSelector" in v for v in rayjob_violations(selected))  # the old manifest's shape
    assert rayjob_violations({**selected, "backoffLimit": 0}) == []
    assert rayjob_violations({"entrypoint": "x"}) == ["one of rayClusterSpec or clusterSelector must be set"]
    assert rayjob_violations({"rayClusterSpec": {}, "retries": 1}) == ["unknown field spec.retries"]
    assert rayjob_violations({"rayClusterSpec": {}, "ttlSecondsAfterFinished": 60}) == [
        "ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true"]


def test_rayservice_serves_the_recommender_app():
    from ray.serve.schema import ServeDeploySchema

    docs = manifests()
    service = docs["RayService"]["spec"]
    serve_config = ServeDeploySchema.model_validate(yaml.safe_load(service["serveConfigV2"]))
    local = load_yaml(REPO / "configs" / "serve.yaml")
    (app,), (local_app,) = serve_config.applications, local["applications"]
    assert app.import_path == local_app["import_path"]
    module, attribute = app.import_path.split(":")
    source = Path(importlib.util.find_spec(module).origin).read_text()
    assert f"def {attribute}(" in source
    assert [d.name for d in app.deployments] == [d["name"] for d in local_app["deployments"]]
    assert set(app.deployments[0].user_config) == set(local_app["deployments"][0]["user_config"])
    check_cluster_spec(service["rayClusterConfig"], docs["PersistentVolumeClaim"]["metadata"]["name"], "RayService", gpu_groups=False)


def test_launch_call_parser_rejects_unknown_commands_and_flags():
    with pytest.raises(AssertionError):
        parse_launch_calls("python launch.py no-such-command --x 1")
    with pytest.raises(AssertionError):
        parse_launch_calls("python launch.py sweep --no-such-flag 1")


# ---------------------------------------------------------------- docs/cluster.md

def test_docs_commands_parse():
    text = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
    blocks = "\n".join(re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S))
    skipped: list[str] = []
    calls = parse_launch_calls(blocks, skipped)
    assert {c[0] for c in calls} | set(skipped) >= {"sweep", "featurize", "fit"}
    named = re.findall(r"(?:ray up|ray down|ray dashboard|ray exec|ray rsync-up|ray rsync-down)\s+(?:-y\s+)?(\S+\.yaml)",
                       blocks)
    named += re.findall(r"-f (cluster/\S+)", blocks)
    assert named
    for path in named:
        assert (REPO / path).exists(), f"docs/cluster.md names {path}, which does not exist"
    if skipped:
        pytest.skip(f"sub-command(s) {sorted(set(skipped))} not built in this checkout; their calls were not parsed")


def test_serving_clusters_start_ray_in_serves_high_throughput_mode():
    from causalmix.actors.serve.deployment import HIGH_THROUGHPUT_ENV

    wanted = " ".join(f"{name}={value}" for name, value in HIGH_THROUGHPUT_ENV.items())
    for path in RAY_UP_FILES:
        config = load_yaml(path)
        for key in ("head_start_ray_commands", "worker_start_ray_commands"):
            starts = [c for c in config[key] if "ray start" in c]
            assert starts and all(f"{wanted} ray start" in c for c in starts), (path, key)
    cluster = manifests()["RayService"]["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert {k: env.get(k) for k in HIGH_THROUGHPUT_ENV} == HIGH_THROUGHPUT_ENV, container["name"]
