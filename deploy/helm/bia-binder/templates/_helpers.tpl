{{/* Labels of every object of ours; `component` tells the binder service, builds and the podman daemons apart. */}}
{{- define "bia-binder.labels" -}}
app.kubernetes.io/name: bia-binder
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{- end }}

{{- define "bia-binder.selector" -}}
app.kubernetes.io/name: bia-binder
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bia-binder.image" -}}
{{ .name }}:{{ .tag }}
{{- end }}
