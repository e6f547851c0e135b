"""The operator's own settings: image repositories, defaults, timings; read from the environment.

Every setting has an ``ETCD_OPERATOR_*`` variable (set by the Helm chart from its values), so the
operator Deployment is configured without a config file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from etcd_operator.api.v1alpha1 import DEFAULT_SSD_LABEL

ENV_PREFIX = "ETCD_OPERATOR_"


class OperatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pyetcd_image: str = Field(
        default="ghcr.io/pyetcd/pyetcd", description="Repository of the bundled pyetcd image."
    )
    etcd_image: str = Field(
        default="gcr.io/etcd-development/etcd", description="Repository of upstream etcd images."
    )
    image_pull_policy: str = "IfNotPresent"
    restore_image: str = Field(
        default="ghcr.io/pyetcd/etcd-operator:0.1.0",
        description="The image of the members' init containers (member-init in every member "
        "pod, restore in clusters created from a backup): the operator's own (the backup "
        "library and pyetcd's storage code).",
    )
    ssd_node_label: str = Field(
        default=DEFAULT_SSD_LABEL,
        description="Default node label of SSD nodes, when a cluster does not name its own.",
    )
    status_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often each cluster's status is observed from etcd."
    )
    etcd_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Deadline of each call the operator makes to etcd."
    )
    cluster_domain: str = "cluster.local"
    max_concurrent_rollouts: int = Field(
        default=1,
        ge=1,
        description="Clusters whose members may restart for a new pod template at the same "
        "time (an operator upgrade or a change of these settings re-renders every cluster).",
    )
    scratch_size_mib: int = Field(
        default=4096,
        ge=64,
        description="The operator's scratch space (/tmp) in MiB; a backup verification that "
        "needs more (twice the database) is reported as failed instead of filling it.",
    )
    max_concurrent_backups: int = Field(
        default=4,
        ge=1,
        description="Backups that stream at the same time, across clusters (each holds up to "
        "two 16 MiB parts in memory); one cluster's backups run one at a time.",
    )
    analysis_temp_dir: str = Field(
        default="",
        description="Where a keyspace analysis downloads the backup it reads (the whole "
        "database); empty: the system's temporary directory (TMPDIR, else /tmp). An analysis "
        "whose snapshot is bigger than the free space there fails saying so.",
    )
    analysis_timeout_seconds: float = Field(
        default=600.0, gt=0, description="How long pyetcdutl analyze may run per analysis."
    )
    max_concurrent_analyses: int = Field(
        default=1,
        ge=1,
        description="Keyspace analyses that run at the same time, across clusters (each holds "
        "a database in the temporary directory and a core busy).",
    )
    pyetcdutl: str = Field(
        default="pyetcdutl",
        min_length=1,
        description="The pyetcdutl that analyses backups: a path, or a name looked up on PATH "
        "and then beside the operator's Python (where its distribution installs it).",
    )
    network_policy_default: bool = Field(
        default=False,
        description="Whether clusters whose spec.networkPolicy.enabled is unset get a "
        "NetworkPolicy (the Helm chart turns it on).",
    )
    operator_namespace: str = Field(
        default="",
        description="The namespace of the operator's own pod (the chart sets it from the "
        "downward API): a cluster's NetworkPolicy admits the operator from there. Empty: the "
        "operator runs outside the cluster.",
    )
    operator_pod_labels: str = Field(
        default="",
        description="Labels of the operator's own pods, as key=value,key=value: with "
        "operator_namespace, the peer a cluster's NetworkPolicy admits the operator as. Empty: "
        "every pod of operator_namespace.",
        pattern=r"^([^=,]+=[^=,]*(,[^=,]+=[^=,]*)*)?$",
    )

    def operator_labels(self) -> dict[str, str]:
        """``operator_pod_labels`` as a dict."""
        pairs = (item.split("=", 1) for item in self.operator_pod_labels.split(",") if item)
        return {key.strip(): value.strip() for key, value in pairs}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env:
                values[name] = env[key]
        return cls.model_validate(values)
