{{- define "kuik.webhook.serviceName" -}}
{{- include "kuik.componentName" (dict "top" . "component" "webhook") -}}
{{- end -}}

{{/* The Secret with the serving certificate (upstream's name), from cert-manager or the chart. */}}
{{- define "kuik.webhook.certSecretName" -}}
{{- if .Values.webhook.existingSecret -}}
{{- .Values.webhook.existingSecret -}}
{{- else -}}
{{- printf "%s-webhook-server-cert" (include "kuik.fullname" . | trunc 44 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{- define "kuik.webhook.certificateName" -}}
{{- printf "%s-serving-cert" (include "kuik.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}
