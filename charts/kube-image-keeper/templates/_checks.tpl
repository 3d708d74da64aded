{{/* Refuse value combinations that would install a broken kuik, with a message saying what to do. */}}
{{- define "kuik.checkValues" -}}
{{- if hasKey .Values "configuration" -}}
{{- fail "configuration: kuik's chart reads the operator configuration from global.configuration (subcharts only see global values); move upstream's `configuration:` block under `global:`" -}}
{{- end -}}
{{- $external := include "kuik.redis.external" . -}}
{{- if and $external .Values.redis.enabled -}}
{{- fail "global.redis.external is set and the bundled Redis is on: set redis.enabled=false to use the external Redis" -}}
{{- end -}}
{{- if and (not $external) (not .Values.redis.enabled) -}}
{{- fail "no Redis: keep redis.enabled=true (bundled) or set global.redis.external.url or global.redis.external.sentinel.hosts" -}}
{{- end -}}
{{- include "kuik.checkRedis" . -}}
{{- end -}}
