"""Freeze a config into a manifest, and read, verify and check manifests for staleness."""

from arkor.manifest._build import BuildResult, build, build_project, freeze, job_config_for
from arkor.manifest._callbacks import CALLBACK_EVENTS, ResolvedCallback, load_callback, split_target
from arkor.manifest._check import check_project, validate_project
from arkor.manifest._dataset import DatasetReport, inspect_dataset
from arkor.manifest._eval import file_rows
from arkor.manifest._manifest import (
    MANIFEST_RELATIVE_PATH,
    MANIFEST_VERSION,
    Manifest,
    ManifestCallback,
    ManifestDataset,
    ManifestEval,
    ManifestHeldOut,
    ManifestSecret,
    ManifestSource,
    Staleness,
    canonical_json,
    check_staleness,
    compute_digest,
    manifest_path_for,
    project_root_of,
    read_fresh_manifest,
    read_manifest,
)

__all__ = [
    "CALLBACK_EVENTS",
    "MANIFEST_RELATIVE_PATH",
    "MANIFEST_VERSION",
    "BuildResult",
    "DatasetReport",
    "Manifest",
    "ManifestCallback",
    "ManifestDataset",
    "ManifestEval",
    "ManifestHeldOut",
    "ManifestSecret",
    "ManifestSource",
    "ResolvedCallback",
    "Staleness",
    "build",
    "build_project",
    "canonical_json",
    "check_project",
    "check_staleness",
    "compute_digest",
    "file_rows",
    "freeze",
    "inspect_dataset",
    "job_config_for",
    "load_callback",
    "manifest_path_for",
    "project_root_of",
    "read_fresh_manifest",
    "read_manifest",
    "split_target",
    "validate_project",
]
