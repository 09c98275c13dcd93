{{- define "vt.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vt.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "vt.labels" -}}
{{ include "vt.selectorLabels" . }}
app.kubernetes.io/part-of: volcano-topology
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The configuration with the Lease name filled in (default: the full name). */}}
{{- define "vt.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $operator := get $config "operator" | default dict -}}
{{- $election := get $operator "leaderElection" | default dict -}}
{{- if not (hasKey $election "leaseName") -}}
{{- $_ := set $election "leaseName" (include "vt.fullname" .) -}}
{{- end -}}
{{- $_ := set $operator "leaderElection" $election -}}
{{- $_ := set $config "operator" $operator -}}
{{- if not (hasKey $config "networkTopologyDiscovery") -}}
{{- $_ := set $config "networkTopologyDiscovery" list -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "vt.leaseName" -}}
{{- $election := (.Values.config.operator | default dict).leaderElection | default dict -}}
{{- $election.leaseName | default (include "vt.fullname" .) -}}
{{- end -}}

{{/* "true" when the operator needs Node read access. */}}
{{- define "vt.needsNodes" -}}
{{- $mode := toString .Values.rbac.nodes -}}
{{- if eq $mode "true" -}}true
{{- else if eq $mode "auto" -}}
{{- $needs := false -}}
{{- range .Values.config.networkTopologyDiscovery -}}
{{- if and (ne (toString .enabled) "false") (has .source $.Values.rbac.nodeSources) -}}{{- $needs = true -}}{{- end -}}
{{- end -}}
{{- $status := ((.Values.config.operator | default dict).status | default dict) -}}
{{- if $status.nodeCount -}}{{- $needs = true -}}{{- end -}}
{{- if $needs -}}true{{- end -}}
{{- end -}}
{{- end -}}
