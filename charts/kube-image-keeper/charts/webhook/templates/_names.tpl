{{- define "kuik.webhook.serviceName" -}}
{{- include "kuik.componentName" (dict "top" . "component" "webhook") -}}
{{- end -}}

{{/* The Secret with the serving certificate (upstream's name), from cert-manager or the chart. */}}
{{- define "kuik.webhook.certSecretName" -}}
{{- printf "%s-webhook-server-cert" (include "kuik.fullname" . | trunc 44 | trimSuffix "-") -}}
{{- end -}}

{{- define "kuik.webhook.certificateName" -}}
{{- printf "%s-serving-cert" (include "kuik.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}
