{{/*
The chart's name, truncated to 63 characters (a DNS label).
*/}}
{{- define "etcd-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: <release>-<chart> unless the release name already holds the chart name.
*/}}
{{- define "etcd-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "etcd-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels of every object of the release.
*/}}
{{- define "etcd-operator.labels" -}}
helm.sh/chart: {{ include "etcd-operator.chart" . }}
{{ include "etcd-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: etcd-operator
{{- end }}

{{/*
Labels that select the operator's pods (immutable on the Deployment).
*/}}
{{- define "etcd-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "etcd-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "etcd-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "etcd-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "etcd-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Rules the operator needs inside each namespace it serves: what its code (and kopf) calls, no more.
e2e/test_rbac.py holds them against the API server's audit log of the e2e run: every verb granted
here is used there (or listed there with the reason no request shows it), and nothing is refused.
*/}}
{{- define "etcd-operator.namespacedRules" -}}
# EtcdClusters: kopf lists and watches them and keeps its state in their annotations (patch; also
# to remove the finalizer that earlier operator versions left); the status refresh reads each
# (get); the operator writes the status subresource (a merge patch).
- apiGroups: ["etcd.pyetcd.io"]
  resources: ["etcdclusters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["etcd.pyetcd.io"]
  resources: ["etcdclusters/status"]
  verbs: ["patch"]
# Children carry a controller owner reference with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin allows only with this permission.
- apiGroups: ["etcd.pyetcd.io"]
  resources: ["etcdclusters/finalizers"]
  verbs: ["update"]
# What an EtcdCluster owns: the StatefulSet, the peer and client Services, the bootstrap ConfigMap
# and the PodDisruptionBudget. Each pass reads them by name (get) and writes them by server-side
# apply (patch, and create when the child does not exist yet). The garbage collector, not the
# operator, deletes them with their cluster.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
# The NetworkPolicy of a cluster (spec.networkPolicy): read by name each pass, written by
# server-side apply like the children above, and deleted when the cluster's policy is turned off.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
# Member pods and volume claims: listed by the cluster's labels, never watched; the claims of
# members removed by a scale-in are deleted, and the pod and claim of a member that lost its
# data (replaced on a new volume).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "delete"]
# Events about the clusters: core/v1 Events, posted by kopf and by the status refresh.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# EtcdBackups: kopf lists and watches them and keeps its state in their annotations, and its
# finalizer on those whose deletionPolicy is Delete (patch); a run writes the status subresource.
# A cluster's pass lists its backups, creates those its schedule and annotation ask for, and
# deletes those retention lets go (and ended ones past ttlSecondsAfterFinished); a cluster
# created from a backup reads that EtcdBackup (get).
- apiGroups: ["etcd.pyetcd.io"]
  resources: ["etcdbackups"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["etcd.pyetcd.io"]
  resources: ["etcdbackups/status"]
  verbs: ["patch"]
# EtcdDefrags: kopf lists and watches them (watch events only: no finalizer, no annotations); a
# cluster's pass lists them and writes their status; ended ones past ttlSecondsAfterFinished are
# deleted.
- apiGroups: ["etcd.pyetcd.io"]
  resources: ["etcddefrags"]
  verbs: ["list", "watch", "delete"]
- apiGroups: ["etcd.pyetcd.io"]
  resources: ["etcddefrags/status"]
  verbs: ["patch"]
# Secrets, always by name, never listed or watched, so the operator holds no Secret it was not
# sent to: those a backup store names (S3 credentials, a CA bundle, the encryption key), read
# when a backup runs; the TLS Secrets of spec.tls, read each pass (a user's, source Secret); and
# the CAs and certificates the operator generates (source Generated), written by server-side
# apply (create, patch) when issued or renewed.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
{{- end }}

{{/*
Cluster-scoped rules kopf needs whatever the namespaces: it lists and watches CRDs to discover
its resources (and notices the EtcdCluster CRD being added or removed).
*/}}
{{- define "etcd-operator.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# The node of a member pod that is not Ready, and the volume of its claim: a member whose node is
# gone while its volume is local to that node is replaced (cluster-scoped reads, never watched).
- apiGroups: [""]
  resources: ["nodes", "persistentvolumes"]
  verbs: ["get"]
{{- end }}
