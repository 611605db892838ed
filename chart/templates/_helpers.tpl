{{/*
Names. The full name is cut to 52 characters so that "<fullname>-migrate" and the
per-worker "<fullname>-<layer>" stay valid DNS labels (63).
*/}}
{{- define "dwh-workers.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "dwh-workers.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the resources of one layer. Context: dict root, name. */}}
{{- define "dwh-workers.workerFullname" -}}
{{- printf "%s-%s" (include "dwh-workers.fullname" .root) .name }}
{{- end }}

{{/*
User tags (docs/TAGS.md), the CDM worker's only. A non-empty tags.rules is the rules
file: the ConfigMap "<fullname>-tag-rules" (key rules.toml), mounted read-only into the
CDM pods at tagRulesDir and named by DWH_TAG_RULES. Empty, the worker reads the file
the image ships.
*/}}
{{- define "dwh-workers.tagRulesName" -}}
{{- printf "%s-tag-rules" (include "dwh-workers.fullname" .) }}
{{- end }}

{{- define "dwh-workers.tagRulesDir" -}}
/etc/dwh/tags
{{- end }}

{{/* "true" when the pods of this layer mount the rules file. Context: dict root, name. */}}
{{- define "dwh-workers.tagRulesMounted" -}}
{{- if and (eq .name "cdm") .root.Values.tags.rules }}true{{ end }}
{{- end }}

{{- define "dwh-workers.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. Context: root. */}}
{{- define "dwh-workers.labels" -}}
helm.sh/chart: {{ include "dwh-workers.chart" . }}
app.kubernetes.io/name: {{ include "dwh-workers.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dwh
{{- end }}

{{/* Selector labels of one layer. Context: dict root, name. */}}
{{- define "dwh-workers.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dwh-workers.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Labels of one layer's resources. Context: dict root, name. */}}
{{- define "dwh-workers.workerLabels" -}}
{{ include "dwh-workers.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "dwh-workers.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Kafka flavours. */}}
{{- define "dwh-workers.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "dwh-workers.kafkaTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* PostgreSQL sslmodes that check the server's certificate against a CA (verify-ca
checks the chain only; only verify-full checks the host name too). */}}
{{- define "dwh-workers.pgVerifies" -}}
{{- if has .Values.postgres.sslmode (list "verify-ca" "verify-full") }}true{{ end }}
{{- end }}

{{/*
What the values leave in plain text or unverified TLS, one text per service (the same
as the workers' start-up warning, which names them when the host is not the loopback).
As YAML {items: [...]}.
*/}}
{{- define "dwh-workers.unverified" -}}
{{- $items := list }}
{{- if not (include "dwh-workers.kafkaTls" .) }}
{{- $items = append $items (printf "Kafka over %s, without TLS" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if not .Values.redis.ssl }}
{{- $items = append $items "Redis without TLS" }}
{{- end }}
{{- if ne .Values.postgres.sslmode "verify-full" }}
{{- $caChecked := or (eq .Values.postgres.sslmode "verify-ca") (and (eq .Values.postgres.sslmode "require") (not (empty .Values.postgres.sslRootCertFile))) }}
{{- $what := ternary "the CA checked, not the host name" "the server not verified" $caChecked }}
{{- $items = append $items (printf "PostgreSQL with sslmode=%s, %s" .Values.postgres.sslmode $what) }}
{{- end }}
{{- toYaml (dict "items" $items) }}
{{- end }}

{{/* "host:port,..." for clients that take a bootstrap list (KEDA). */}}
{{- define "dwh-workers.bootstrapServers" -}}
{{- if .Values.keda.bootstrapServers }}
{{- .Values.keda.bootstrapServers }}
{{- else if contains ":" .Values.kafka.host }}
{{- .Values.kafka.host }}
{{- else }}
{{- printf "%s:%d" .Values.kafka.host (int .Values.kafka.port) }}
{{- end }}
{{- end }}

{{/*
Path of a CA file: relative names live in the mounted caBundle; an absolute path is
used as it is. Context: dict root, file.
*/}}
{{- define "dwh-workers.caPath" -}}
{{- if hasPrefix "/" .file }}
{{- .file }}
{{- else }}
{{- printf "%s/%s" (trimSuffix "/" .root.Values.caBundle.mountPath) .file }}
{{- end }}
{{- end }}

{{- define "dwh-workers.caBundleEnabled" -}}
{{- if or .Values.caBundle.secretName .Values.caBundle.configMapName }}true{{ end }}
{{- end }}

{{/*
Settings shared by every layer and the migration Job, as a YAML map of environment
variables (names exactly as docs/configuration.md).
*/}}
{{- define "dwh-workers.commonSettings" -}}
KAFKA_HOST: {{ .Values.kafka.host | quote }}
KAFKA_PORT: {{ .Values.kafka.port | int | toString | quote }}
KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
KAFKA_SASL_MECHANISM: {{ .Values.kafka.saslMechanism | quote }}
{{- if .Values.kafka.sslCaFile }}
KAFKA_SSL_CA_LOCATION: {{ include "dwh-workers.caPath" (dict "root" $ "file" .Values.kafka.sslCaFile) | quote }}
{{- else if .Values.kafka.useSystemCa }}
KAFKA_SSL_CA_LOCATION: {{ .Values.systemCaFile | quote }}
{{- end }}
REDIS_HOST: {{ .Values.redis.host | quote }}
REDIS_PORT: {{ .Values.redis.port | int | toString | quote }}
REDIS_SSL: {{ .Values.redis.ssl | toString | quote }}
{{- if .Values.redis.sslCaFile }}
REDIS_SSL_CA_FILE: {{ include "dwh-workers.caPath" (dict "root" $ "file" .Values.redis.sslCaFile) | quote }}
{{- else if .Values.redis.useSystemCa }}
REDIS_SSL_CA_FILE: {{ .Values.systemCaFile | quote }}
{{- end }}
PG_WAREHOUSE_HOST: {{ .Values.postgres.host | quote }}
PG_WAREHOUSE_PORT: {{ .Values.postgres.port | int | toString | quote }}
PG_WAREHOUSE_DBNAME: {{ .Values.postgres.dbname | quote }}
PG_WAREHOUSE_USER: {{ .Values.postgres.user | quote }}
PG_WAREHOUSE_SSLMODE: {{ .Values.postgres.sslmode | quote }}
{{- if .Values.postgres.sslRootCertFile }}
PG_WAREHOUSE_SSLROOTCERT: {{ include "dwh-workers.caPath" (dict "root" $ "file" .Values.postgres.sslRootCertFile) | quote }}
{{- else if .Values.postgres.useSystemCa }}
PG_WAREHOUSE_SSLROOTCERT: {{ .Values.systemCaFile | quote }}
{{- end }}
DWH_HTTP_PORT: {{ .Values.httpPort | int | toString | quote }}
DWH_LOG_FORMAT: {{ .Values.log.format | quote }}
DWH_LOG_LEVEL: {{ .Values.log.level | quote }}
{{- end }}

{{/* Settings of one layer: the common ones plus its topics, group and batch (and the
CDM's user tags). Context: dict root, name, worker. */}}
{{- define "dwh-workers.workerSettings" -}}
{{ include "dwh-workers.commonSettings" .root }}
KAFKA_CONSUMER_GROUP: {{ .worker.consumerGroup | quote }}
DWH_SESSION_TIMEOUT_MS: {{ .root.Values.kafka.sessionTimeoutMs | int | toString | quote }}
KAFKA_SOURCE_TOPIC: {{ .worker.sourceTopic | quote }}
{{- with .worker.destinationTopic }}
KAFKA_DESTINATION_TOPIC: {{ . | quote }}
{{- end }}
DWH_BATCH_SIZE: {{ .worker.batchSize | int | toString | quote }}
DWH_BATCH_WAIT_MS: {{ .worker.batchWaitMs | int | toString | quote }}
{{- if eq .name "cdm" }}
DWH_TAG_SWEEP_INTERVAL_S: {{ .root.Values.tags.sweepIntervalSeconds | int | toString | quote }}
{{- if include "dwh-workers.tagRulesMounted" . }}
DWH_TAG_RULES: {{ printf "%s/rules.toml" (include "dwh-workers.tagRulesDir" .root) | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dwh-workers.secretName" -}}
{{- default (include "dwh-workers.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/*
The credentials the containers get, as YAML {items: [{env, key, value, optional}]}.
Kafka credentials only under SASL (given without SASL they are refused by
dwh-workers.validate). A chart-created Secret holds only the non-empty
values (an unset variable keeps the workers' default); an existing Secret must hold
every key except the Redis password.
*/}}
{{- define "dwh-workers.secretItems" -}}
{{- $s := .Values.secret }}
{{- $all := list }}
{{- if include "dwh-workers.kafkaSasl" . }}
{{- $all = append $all (dict "env" "KAFKA_CONSUMER_USERNAME" "key" $s.keys.kafkaConsumerUsername "value" $s.kafkaConsumerUsername "optional" false) }}
{{- $all = append $all (dict "env" "KAFKA_CONSUMER_PASSWORD" "key" $s.keys.kafkaConsumerPassword "value" $s.kafkaConsumerPassword "optional" false) }}
{{- end }}
{{- $all = append $all (dict "env" "REDIS_PASSWORD" "key" $s.keys.redisPassword "value" $s.redisPassword "optional" true) }}
{{- $all = append $all (dict "env" "PG_WAREHOUSE_PASSWORD" "key" $s.keys.pgWarehousePassword "value" $s.pgWarehousePassword "optional" false) }}
{{- $items := list }}
{{- range $all }}
{{- if or $s.existingSecret .value }}
{{- $items = append $items . }}
{{- end }}
{{- end }}
{{- toYaml (dict "items" $items) }}
{{- end }}

{{/* data: of a chart-created Secret. */}}
{{- define "dwh-workers.secretData" -}}
{{- range (include "dwh-workers.secretItems" . | fromYaml).items }}
{{ .key }}: {{ .value | b64enc | quote }}
{{- end }}
{{- end }}

{{/* env entries of the credentials. Context: dict root, secretName. */}}
{{- define "dwh-workers.secretEnv" -}}
{{- range (include "dwh-workers.secretItems" .root | fromYaml).items }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $.secretName }}
      key: {{ .key }}
      {{- if and $.root.Values.secret.existingSecret .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{- define "dwh-workers.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "dwh-workers.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Volumes of a pod. Context: dict root, name (a layer, or "migrate"). */}}
{{- define "dwh-workers.volumes" -}}
{{- $v := .root.Values -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if $v.caBundle.secretName }}
- name: ca
  secret:
    secretName: {{ $v.caBundle.secretName }}
{{- else if $v.caBundle.configMapName }}
- name: ca
  configMap:
    name: {{ $v.caBundle.configMapName }}
{{- end }}
{{- if include "dwh-workers.tagRulesMounted" . }}
- name: tag-rules
  configMap:
    name: {{ include "dwh-workers.tagRulesName" .root }}
{{- end }}
{{- end }}

{{/* Volume mounts of a container. Context: dict root, name. */}}
{{- define "dwh-workers.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "dwh-workers.caBundleEnabled" .root }}
- name: ca
  mountPath: {{ .root.Values.caBundle.mountPath }}
  readOnly: true
{{- end }}
{{- if include "dwh-workers.tagRulesMounted" . }}
- name: tag-rules
  mountPath: {{ include "dwh-workers.tagRulesDir" .root }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod-level fields shared by the workers and the migration Job. Context: dict root, name. */}}
{{- define "dwh-workers.podCommon" -}}
{{- $ctx := . }}
{{- with .root }}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "dwh-workers.podSecurityContext" . | nindent 2 }}
volumes:
  {{- include "dwh-workers.volumes" $ctx | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Checks that span several keys. Rendered once, from configmap.yaml: `helm template` and
`helm install` fail with every problem in one message (the defaults alone list all they
need); `helm lint` only prints it (Helm's lint takes a template's `fail` as information),
which is why the contradictions are also rules of values.schema.json, which lint enforces.

TLS is verified against a CA: with Kafka SSL/SASL_SSL, Redis ssl and PostgreSQL
verify-ca/verify-full a CA file is required unless <service>.useSystemCa says to trust
the image's system store (systemCaFile). A CA (or useSystemCa) that the protocol or mode would not use
is refused, as the workers refuse it, and so are Kafka credentials without SASL: a
setting given is never silently ignored.
*/}}
{{- define "dwh-workers.validate" -}}
{{- $v := .Values }}
{{- $errors := list }}
{{- if and $v.caBundle.secretName $v.caBundle.configMapName }}
{{- $errors = append $errors "caBundle: set secretName or configMapName, not both" }}
{{- end }}
{{- range $key, $file := dict "kafka.sslCaFile" $v.kafka.sslCaFile "redis.sslCaFile" $v.redis.sslCaFile "postgres.sslRootCertFile" $v.postgres.sslRootCertFile }}
{{- if and $file (ne $file (include "dwh-workers.caPath" (dict "root" $ "file" $file))) (not (include "dwh-workers.caBundleEnabled" $)) }}
{{- $errors = append $errors (printf "%s: %q is a file name inside caBundle, so set caBundle.secretName or caBundle.configMapName (or give an absolute path)" $key $file) }}
{{- end }}
{{- end }}
{{- if include "dwh-workers.kafkaSasl" . }}
{{- if not (or $v.secret.existingSecret (and $v.secret.kafkaConsumerUsername $v.secret.kafkaConsumerPassword)) }}
{{- $errors = append $errors (printf "secret.kafkaConsumerUsername and secret.kafkaConsumerPassword are required when kafka.securityProtocol is %s (or name secret.existingSecret)" $v.kafka.securityProtocol) }}
{{- end }}
{{- else if or $v.secret.kafkaConsumerUsername $v.secret.kafkaConsumerPassword }}
{{- $errors = append $errors (printf "secret.kafkaConsumerUsername or secret.kafkaConsumerPassword is set but kafka.securityProtocol %s uses no SASL and would never send them: choose SASL_SSL (or SASL_PLAINTEXT) to log in with them, or remove both" $v.kafka.securityProtocol) }}
{{- end }}
{{- $protocol := $v.kafka.securityProtocol }}
{{- if include "dwh-workers.kafkaTls" . }}
{{- if and $v.kafka.sslCaFile $v.kafka.useSystemCa }}
{{- $errors = append $errors "kafka.sslCaFile and kafka.useSystemCa: true: trust one, the CA file or the system store" }}
{{- else if not (or $v.kafka.sslCaFile $v.kafka.useSystemCa) }}
{{- $errors = append $errors (printf "kafka.sslCaFile is required with kafka.securityProtocol %s (a CA file in caBundle), unless kafka.useSystemCa: true" $protocol) }}
{{- end }}
{{- else }}
{{- if $v.kafka.sslCaFile }}
{{- $errors = append $errors (printf "kafka.sslCaFile is set but kafka.securityProtocol %s uses no TLS: choose SASL_SSL (or SSL), or remove kafka.sslCaFile" $protocol) }}
{{- end }}
{{- if $v.kafka.useSystemCa }}
{{- $errors = append $errors (printf "kafka.useSystemCa is set but kafka.securityProtocol %s uses no TLS: choose SASL_SSL (or SSL), or remove kafka.useSystemCa" $protocol) }}
{{- end }}
{{- end }}
{{- if $v.redis.ssl }}
{{- if and $v.redis.sslCaFile $v.redis.useSystemCa }}
{{- $errors = append $errors "redis.sslCaFile and redis.useSystemCa: true: trust one, the CA file or the system store" }}
{{- else if not (or $v.redis.sslCaFile $v.redis.useSystemCa) }}
{{- $errors = append $errors "redis.sslCaFile is required with redis.ssl: true (a CA file in caBundle), unless redis.useSystemCa: true" }}
{{- end }}
{{- else }}
{{- if $v.redis.sslCaFile }}
{{- $errors = append $errors "redis.sslCaFile is set but redis.ssl is false: set redis.ssl: true (the TLS port, usually 6380), or remove redis.sslCaFile" }}
{{- end }}
{{- if $v.redis.useSystemCa }}
{{- $errors = append $errors "redis.useSystemCa is set but redis.ssl is false: set redis.ssl: true, or remove redis.useSystemCa" }}
{{- end }}
{{- end }}
{{- $sslmode := $v.postgres.sslmode }}
{{- if and $v.postgres.sslRootCertFile $v.postgres.useSystemCa }}
{{- $errors = append $errors "postgres.sslRootCertFile and postgres.useSystemCa: true: trust one, the CA file or the system store" }}
{{- else if and (include "dwh-workers.pgVerifies" .) (not (or $v.postgres.sslRootCertFile $v.postgres.useSystemCa)) }}
{{- $errors = append $errors (printf "postgres.sslRootCertFile is required with postgres.sslmode %s (a CA file in caBundle), unless postgres.useSystemCa: true (with verify-full)" $sslmode) }}
{{- end }}
{{- if and $v.postgres.useSystemCa (ne $sslmode "verify-full") }}
{{- $errors = append $errors (printf "postgres.useSystemCa needs postgres.sslmode verify-full, not %s: any public CA's certificate would pass verify-ca, whatever its host" $sslmode) }}
{{- end }}
{{- if and $v.postgres.sslRootCertFile (has $sslmode (list "disable" "allow" "prefer")) }}
{{- $errors = append $errors (printf "postgres.sslRootCertFile is set but postgres.sslmode %s may connect without TLS: choose verify-full (or verify-ca), or remove postgres.sslRootCertFile" $sslmode) }}
{{- end }}
{{- if $errors }}
{{- fail (printf "invalid values (the defaults are TLS verified against a CA; chart/README.md lists a minimal set, and plain text must be chosen explicitly):\n  - %s" (join "\n  - " $errors)) }}
{{- end }}
{{- end }}
