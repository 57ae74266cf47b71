"""The deployment files under platform/deploy/ cannot run here (no cloud, no Kubernetes API server: kubectl's
dry run needs one), so they are checked offline: the Ray cluster launcher config against Ray's own schema, the
KubeRay RayJob and its companions against a schema of the fields they must have (KubeRay's CRD is not installed),
and every gcpo command in them against the config tree."""

import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from gcpo.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "platform" / "deploy"

CONTAINER = {"type": "object", "required": ["name", "image"],
             "properties": {"name": {"type": "string"}, "image": {"type": "string"}}}
POD_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": {
    "type": "object", "required": ["containers"],
    "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER}}}}}
START_PARAMS = {"type": "object", "additionalProperties": {"type": "string"}}
RAYJOB_SPEC_KEYS = ["activeDeadlineSeconds", "backoffLimit", "clusterSelector", "entrypoint", "entrypointNumCpus",
                    "entrypointNumGpus", "entrypointResources", "jobId", "managedBy", "metadata", "rayClusterSpec",
                    "runtimeEnvYAML", "shutdownAfterJobFinishes", "submissionMode", "submitterPodTemplate",
                    "submitterConfig", "suspend", "ttlSecondsAfterFinished", "deletionStrategy"]
RAYJOB_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["entrypoint", "rayClusterSpec"], "additionalProperties": False,
            "properties": {
                **{k: {} for k in RAYJOB_SPEC_KEYS},
                "entrypoint": {"type": "string"}, "runtimeEnvYAML": {"type": "string"},
                "shutdownAfterJobFinishes": {"type": "boolean"}, "ttlSecondsAfterFinished": {"type": "integer"},
                "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                "rayClusterSpec": {
                    "type": "object", "required": ["headGroupSpec", "workerGroupSpecs"],
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "headGroupSpec": {"type": "object", "required": ["rayStartParams", "template"],
                                          "properties": {"rayStartParams": START_PARAMS, "template": POD_TEMPLATE}},
                        "workerGroupSpecs": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["groupName", "replicas", "rayStartParams", "template"],
                            "properties": {"groupName": {"type": "string"}, "replicas": {"type": "integer"},
                                           "minReplicas": {"type": "integer"}, "maxReplicas": {"type": "integer"},
                                           "rayStartParams": START_PARAMS, "template": POD_TEMPLATE}}},
                    }},
            }},
    }}
K8S_SCHEMAS = {
    "PersistentVolumeClaim": {"required": ["spec"], "properties": {"spec": {
        "required": ["accessModes", "resources"], "properties": {"accessModes": {"contains": {"const": "ReadWriteMany"}}}}}},
    "Deployment": {"required": ["spec"], "properties": {"spec": {
        "required": ["selector", "template"], "properties": {"template": POD_TEMPLATE}}}},
    "Service": {"required": ["spec"], "properties": {"spec": {"required": ["selector", "ports"]}}},
    "NetworkPolicy": {"required": ["spec"], "properties": {"spec": {"required": ["podSelector"]}}},
}


def load_all(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def gcpo_overrides(command: str) -> tuple[str | None, list[str]]:
    """(preset, KEY=VALUE overrides) of a `python -m gcpo.cli train ...` command line."""
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "gcpo.cli"] and args[3] in ("train", "sweep"), command
    preset = args[args.index("--preset") + 1] if "--preset" in args else None
    return preset, [a for a in args[4:] if "=" in a and not a.startswith("-")]


def test_launcher_config_passes_rays_schema_and_keeps_the_dashboard_on_loopback():
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types["trainer_gpu"]["resources"]["GPU"] > 0 and types["generator_gpu"]["resources"]["GPU"] > 0
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    assert "mlflow server" in head and "/shared" in " ".join(config["initialization_commands"])


def test_launcher_config_is_refused_when_broken():
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    config["available_node_types"]["trainer_gpu"]["resourcez"] = config["available_node_types"]["trainer_gpu"].pop("resources")
    with pytest.raises(jsonschema.ValidationError):  # negative control: the schema does catch a typo
        jsonschema.validate(config, schema)


def test_rayjob_manifest_has_separate_gpu_groups_shared_storage_and_a_valid_gcpo_command():
    (job,) = load_all("kuberay/rayjob.yaml")
    jsonschema.validate(job, RAYJOB_SCHEMA)
    cluster = job["spec"]["rayClusterSpec"]
    groups = {g["groupName"]: g["template"]["spec"] for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"trainer", "generator"}
    assert groups["trainer"]["nodeSelector"] != groups["generator"]["nodeSelector"]
    for pod in [cluster["headGroupSpec"]["template"]["spec"], *groups.values()]:
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        assert claims == {"gcpo-shared"}
        assert any(m["mountPath"] == "/shared" for c in pod["containers"] for m in c["volumeMounts"])
    for pod in groups.values():
        assert all(c["resources"]["limits"]["nvidia.com/gpu"] > 0 for c in pod["containers"])
    preset, overrides = gcpo_overrides(job["spec"]["entrypoint"])
    cfg = load_config(preset=preset, overrides=overrides)  # unknown keys or bad values raise ConfigError
    assert cfg.trainer.device == "cuda" and cfg.rollout.gpus_per_generator > 0
    # each kind is pinned to its group by a custom resource that only that group's nodes declare (the value is
    # a JSON string literal holding a JSON object, as `ray start --resources` takes it)
    declared = {g["groupName"]: json.loads(json.loads(g["rayStartParams"]["resources"]))
                for g in cluster["workerGroupSpecs"]}
    assert set(declared["trainer"]) == {cfg.trainer.placement_resource}
    assert set(declared["generator"]) == {cfg.rollout.placement_resource}
    assert cfg.trainer.output_dir.startswith("/shared/")
    assert cfg.tracking.uri == "http://gcpo-mlflow:5000"
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["MLFLOW_TRACKING_URI"] == cfg.tracking.uri


def test_mlflow_and_storage_manifests():
    docs = load_all("kuberay/storage-mlflow.yaml")
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]
        jsonschema.validate(doc, {"type": "object", **K8S_SCHEMAS[doc["kind"]]})
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["Service"]["metadata"]["name"] == "gcpo-mlflow"  # what the RayJob's tracking.uri names
    assert by_kind["Service"]["spec"]["type"] == "ClusterIP"
    assert by_kind["PersistentVolumeClaim"]["metadata"]["name"] == "gcpo-shared"
    command = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["mlflow", "server"] and "/shared/mlflow/artifacts" in command
