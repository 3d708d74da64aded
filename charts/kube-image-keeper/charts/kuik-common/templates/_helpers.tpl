{{/*
Named templates shared by the umbrella chart and its subcharts (webhook, replicator, monitor,
redis), each of which depends on this library chart, so that every one of them renders alone as
well as inside the umbrella, and the three services cannot drift apart. Everything a subchart
needs from outside its own values comes from `.Values.global` (the only values Helm passes down
to subcharts; each subchart's values.yaml has the same defaults for the keys it reads).

Calling convention for the per-component templates: (dict "top" $ "component" "webhook" ...),
where "top" is the calling chart's root context.
*/}}

{{/* The release-wide name prefix: upstream's fullname rule, with the chart name fixed. */}}
{{- define "kuik.fullname" -}}
{{- $g := .Values.global | default dict -}}
{{- if $g.fullnameOverride -}}
{{- $g.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "kube-image-keeper" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-kube-image-keeper" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", e.g. kube-image-keeper-webhook. Argument: (dict "top" $ "component" NAME). */}}
{{- define "kuik.componentName" -}}
{{- printf "%s-%s" (include "kuik.fullname" .top | trunc 52 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "kuik.selectorLabels" -}}
app.kubernetes.io/name: kube-image-keeper
app.kubernetes.io/instance: {{ .top.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kuik.labels" -}}
{{ include "kuik.selectorLabels" . }}
app.kubernetes.io/part-of: kube-image-keeper
app.kubernetes.io/version: {{ .top.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .top.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .top.Chart.Name .top.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* Labels every kuik Pod of this release carries (NetworkPolicy peers). */}}
{{- define "kuik.instanceLabels" -}}
app.kubernetes.io/name: kube-image-keeper
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kuik.image" -}}
{{- $img := .Values.global.image -}}
{{- printf "%s:%s" $img.repository (toString ($img.tag | default .Chart.AppVersion)) -}}
{{- end -}}

{{- define "kuik.serviceAccountName" -}}
{{- $sa := .top.Values.serviceAccount -}}
{{- if $sa.create -}}
{{- $sa.name | default (include "kuik.componentName" .) -}}
{{- else -}}
{{- $sa.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The operator ConfigMap (rendered by the umbrella chart from global.configuration). */}}
{{- define "kuik.configMapName" -}}
{{- printf "%s-config" (include "kuik.fullname" .) -}}
{{- end -}}

{{/*
The operator ConfigMap from global.configuration: the umbrella's one, or a standalone service
chart's own. Argument: (dict "top" $ "component" NAME "name" CONFIGMAP-NAME).
*/}}
{{- define "kuik.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .name }}
  namespace: {{ .top.Release.Namespace }}
  labels:
    {{- include "kuik.labels" (dict "top" .top "component" .component) | nindent 4 }}
data:
  # The operator configuration every service reads (docs/configuration.md), from
  # global.configuration. Pods carry its checksum, so changing it rolls them.
  config.yaml: |
    {{- if .top.Values.global.configuration }}
    {{- toYaml .top.Values.global.configuration | nindent 4 }}
    {{- else }}
    {}
    {{- end }}
{{- end -}}

{{/* The bundled Redis: Service name and the Secret holding its generated password. */}}
{{- define "kuik.redis.name" -}}
{{- printf "%s-redis" (include "kuik.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{/* Refuse global.redis combinations that would give the services no working Redis. */}}
{{- define "kuik.checkRedis" -}}
{{- $ext := .Values.global.redis.external -}}
{{- if and (include "kuik.redis.external" .) .Values.global.redis.existingSecret.name -}}
{{- fail "global.redis.existingSecret is the bundled Redis's password: with an external Redis set global.redis.external.passwordSecret instead" -}}
{{- end -}}
{{- if and $ext.url $ext.sentinel.hosts -}}
{{- fail "global.redis.external: set url or sentinel.hosts, not both" -}}
{{- end -}}
{{- if and $ext.sentinel.hosts (not $ext.sentinel.masterName) -}}
{{- fail "global.redis.external.sentinel.masterName is required with sentinel.hosts" -}}
{{- end -}}
{{- end -}}

{{- define "kuik.redis.external" -}}
{{- $ext := .Values.global.redis.external -}}
{{- if or $ext.url $ext.sentinel.hosts -}}true{{- end -}}
{{- end -}}

{{/* The Redis URL the services get (no password in it: that comes from a Secret). */}}
{{- define "kuik.redis.url" -}}
{{- $ext := .Values.global.redis.external -}}
{{- if $ext.url -}}
{{- $ext.url -}}
{{- else if $ext.sentinel.hosts -}}
{{- printf "%s://%s/%s" (ternary "rediss+sentinel" "redis+sentinel" (default false $ext.sentinel.tls)) (join "," $ext.sentinel.hosts) $ext.sentinel.masterName -}}
{{- else -}}
{{- printf "redis://%s.%s.svc:6379/0" (include "kuik.redis.name" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* secretKeyRef of the Redis password, or nothing when Redis has none. */}}
{{- define "kuik.redis.passwordRef" -}}
{{- if include "kuik.redis.external" . -}}
{{- with .Values.global.redis.external.passwordSecret -}}
{{- if .name }}
name: {{ .name }}
key: {{ .key }}
{{- end -}}
{{- end -}}
{{- else }}
{{- include "kuik.redis.bundledPasswordRef" . }}
{{- end -}}
{{- end -}}

{{/* secretKeyRef of the bundled Redis's password: global.redis.existingSecret or the generated one. */}}
{{- define "kuik.redis.bundledPasswordRef" -}}
{{- with .Values.global.redis.existingSecret }}
{{- if .name }}
name: {{ .name }}
key: {{ .key }}
{{- end }}
{{- end }}
{{- if not .Values.global.redis.existingSecret.name }}
name: {{ include "kuik.redis.name" . }}
key: redis-password
{{- end }}
{{- end -}}

{{/* Environment every service gets: where Redis is and how to authenticate to it. */}}
{{- define "kuik.redis.env" -}}
- name: KUIK_REDIS_URL
  value: {{ include "kuik.redis.url" . | quote }}
{{- $ref := include "kuik.redis.passwordRef" . }}
{{- if $ref }}
- name: KUIK_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- $ref | trim | nindent 6 }}
{{- end }}
{{- with .Values.global.redis.external.username }}
- name: KUIK_REDIS_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if and (include "kuik.redis.external" .) .Values.global.redis.external.caSecret.name }}
- name: KUIK_REDIS_CA_FILE
  value: /var/run/kuik/redis-ca/{{ .Values.global.redis.external.caSecret.key }}
{{- end }}
{{- end -}}

{{- define "kuik.redis.volumes" -}}
{{- $ext := .Values.global.redis.external -}}
{{- if and (include "kuik.redis.external" .) $ext.caSecret.name }}
- name: redis-ca
  secret:
    secretName: {{ $ext.caSecret.name }}
{{- end -}}
{{- end -}}

{{- define "kuik.redis.volumeMounts" -}}
{{- $ext := .Values.global.redis.external -}}
{{- if and (include "kuik.redis.external" .) $ext.caSecret.name }}
- name: redis-ca
  mountPath: /var/run/kuik/redis-ca
  readOnly: true
{{- end -}}
{{- end -}}

{{/*
The workload identity of global.cloudIdentity as ServiceAccount annotations and Pod labels
(docs/registries.md): IRSA's role, GKE Workload Identity's Google service account, Azure
Workload Identity's client id and its opt-in label. A part's own serviceAccount.annotations and
podLabels win key by key. Argument: the global values. Returns YAML {annotations, podLabels}.
*/}}
{{- define "kuik.cloudIdentity" -}}
{{- $c := .cloudIdentity | default dict -}}
{{- $annotations := dict -}}
{{- $podLabels := dict -}}
{{- with ($c.aws | default dict).roleArn }}
{{- $_ := set $annotations "eks.amazonaws.com/role-arn" . }}
{{- end }}
{{- with ($c.gcp | default dict).serviceAccount }}
{{- $_ := set $annotations "iam.gke.io/gcp-service-account" . }}
{{- end }}
{{- with ($c.azure | default dict).clientId }}
{{- $_ := set $annotations "azure.workload.identity/client-id" . }}
{{- $_ := set $podLabels "azure.workload.identity/use" "true" }}
{{- end }}
{{- toYaml (dict "annotations" $annotations "podLabels" $podLabels) }}
{{- end -}}

{{/*
One kuik service: ServiceAccount, Deployment, metrics Service, PodDisruptionBudget and the
optional HorizontalPodAutoscaler, ServiceMonitor and NetworkPolicy.
Argument: (dict "top" $ "component" NAME "args" LIST "ports" LIST "volumes" LIST
"volumeMounts" LIST "autoscaling" BOOL "networkPolicyIngress" LIST).
*/}}
{{- define "kuik.workload" -}}
{{- $top := .top -}}
{{- $v := $top.Values -}}
{{- $g := $top.Values.global -}}
{{- $cloud := include "kuik.cloudIdentity" $g | fromYaml -}}
{{- $saAnnotations := merge (dict) ($v.serviceAccount.annotations | default dict) $cloud.annotations -}}
{{- $podLabels := merge (dict) ($v.podLabels | default dict) $cloud.podLabels -}}
{{- $name := include "kuik.componentName" . -}}
{{- $labels := include "kuik.labels" . -}}
{{- $selector := include "kuik.selectorLabels" . -}}
{{- /* Installed alone (not as a part of the umbrella), the chart brings its own ConfigMap and
     checks global.redis itself: the umbrella does both for its parts. */ -}}
{{- $configMap := include "kuik.configMapName" $top -}}
{{- if $top.Chart.IsRoot }}
{{- include "kuik.checkRedis" $top }}
{{- $configMap = printf "%s-config" $name }}
---
{{ include "kuik.configMap" (dict "top" $top "component" .component "name" $configMap) }}
{{- end }}
{{- if $v.serviceAccount.create }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "kuik.serviceAccountName" . }}
  namespace: {{ $top.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
    {{- with $v.serviceAccount.extraLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $saAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: true
{{- end }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $top.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  {{- if not (and .autoscaling $v.autoscaling.enabled) }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with $v.deploymentStrategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- $labels | nindent 8 }}
        {{- with $podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A change of the operator configuration or of the Redis connection rolls the pods.
        checksum/config: {{ toYaml $g.configuration | sha256sum }}
        checksum/redis: {{ toYaml $g.redis | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "kuik.serviceAccountName" . }}
      {{- with $g.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- if $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml $v.topologySpreadConstraints | nindent 8 }}
      {{- else }}
      # Spread replicas over nodes and zones when the scheduler can; never block scheduling.
      topologySpreadConstraints:
        {{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
        - maxSkew: 1
          topologyKey: {{ $key }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
        {{- end }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "kuik.image" $top | quote }}
          imagePullPolicy: {{ $g.image.pullPolicy }}
          command: [{{ printf "kuik-%s" .component | quote }}]
          args:
            - --config=/etc/kube-image-keeper/config.yaml
            - --cluster=kubernetes
            - --metrics-listen=:8080
            - --log-level={{ $g.verbosity | lower }}
            - --log-format=json
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            {{- range $v.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            {{- include "kuik.redis.env" $top | nindent 12 }}
            {{- if $g.metrics.secure }}
            - name: KUIK_METRICS_SECURE
              value: "true"
            {{- end }}
            {{- with $v.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: metrics
              containerPort: 8080
              protocol: TCP
            {{- with .ports }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $v.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.readinessProbe }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: config
              mountPath: /etc/kube-image-keeper
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- with include "kuik.redis.volumeMounts" $top }}
            {{- . | trim | nindent 12 }}
            {{- end }}
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ $configMap }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with include "kuik.redis.volumes" $top }}
        {{- . | trim | nindent 8 }}
        {{- end }}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-metrics
  namespace: {{ $top.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- $selector | nindent 4 }}
  ports:
    - name: http
      port: 8080
      targetPort: metrics
      protocol: TCP
{{- if $v.pdb.create }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $top.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  {{- if ne (toString $v.pdb.maxUnavailable) "" }}
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  {{- else }}
  minAvailable: {{ $v.pdb.minAvailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
{{- end }}
{{- if and .autoscaling $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $top.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
  {{- with $v.autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if $v.serviceMonitor.create }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $name }}
  namespace: {{ $top.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
    {{- with $v.serviceMonitor.extraLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ $top.Release.Namespace | quote }}]
  endpoints:
    - port: http
      path: /metrics
      {{- if $g.metrics.secure }}
      # Prometheus's own ServiceAccount token; bind it with global.metrics.scraperServiceAccounts.
      bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
      {{- end }}
      interval: {{ $v.serviceMonitor.scrapeInterval }}
      scrapeTimeout: {{ $v.serviceMonitor.scrapeTimeout }}
      {{- with $v.serviceMonitor.relabelings }}
      relabelings:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
{{- if $v.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  namespace: {{ $top.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- $selector | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if $v.networkPolicy.egress }}
    - Egress
    {{- end }}
  ingress:
    # Probes come from the kubelet (node addresses, allowed by every CNI); metrics scrapers from
    # networkPolicy.metricsFrom (empty: from anywhere).
    - ports:
        - port: metrics
          protocol: TCP
      {{- with $v.networkPolicy.metricsFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- with .networkPolicyIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $v.networkPolicy.extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.networkPolicy.egress }}
  egress:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
A ClusterRole with the given rules and its binding to the component's ServiceAccount.
Argument: (dict "top" $ "component" NAME "rules" RULES-YAML-STRING).
*/}}
{{- define "kuik.rbac" -}}
{{- if .top.Values.rbac.create }}
{{- $name := include "kuik.componentName" . }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  labels:
    {{- include "kuik.labels" . | nindent 4 }}
rules:
  {{- .rules | nindent 2 }}
  {{- if .top.Values.global.metrics.secure }}
  # global.metrics.secure: who may read /metrics (and /status/images) is asked of the API server.
  - apiGroups: [authentication.k8s.io]
    resources: [tokenreviews]
    verbs: [create]
  - apiGroups: [authorization.k8s.io]
    resources: [subjectaccessreviews]
    verbs: [create]
  {{- end }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "kuik.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "kuik.serviceAccountName" . }}
    namespace: {{ .top.Release.Namespace }}
{{- end }}
{{- end -}}

{{/*
A part's ServiceAccount name seen from the umbrella chart (which holds each part's values under
its key), the same rule as kuik.serviceAccountName. Argument: (dict "top" $ "component" NAME).
*/}}
{{- define "kuik.serviceAccountNameOf" -}}
{{- $sa := (index .top.Values .component).serviceAccount -}}
{{- if $sa.create -}}
{{- $sa.name | default (include "kuik.componentName" .) -}}
{{- else -}}
{{- $sa.name | default "default" -}}
{{- end -}}
{{- end -}}
