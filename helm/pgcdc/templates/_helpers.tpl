{{/* Chart name, at most 63 characters. */}}
{{- define "pgcdc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, prefixed by the chart name unless it already contains it. */}}
{{- define "pgcdc.fullname" -}}
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

{{- define "pgcdc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pgcdc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgcdc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pgcdc.labels" -}}
helm.sh/chart: {{ include "pgcdc.chart" . }}
{{ include "pgcdc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: connector
app.kubernetes.io/part-of: pgcdc
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pgcdc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pgcdc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pgcdc.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
existingSecret.keys entries, in order, with the environment variable pgcdc reads for each
(src/config/schema.ts envVarFor).
*/}}
{{- define "pgcdc.secretEnv" -}}
- {id: postgresPassword, env: PGCDC_POSTGRES_PASSWORD}
- {id: postgresSslRootCert, env: PGCDC_POSTGRES_SSL_ROOT_CERT}
- {id: postgresSslCert, env: PGCDC_POSTGRES_SSL_CERT}
- {id: postgresSslKey, env: PGCDC_POSTGRES_SSL_KEY}
- {id: postgresSslKeyPassword, env: PGCDC_POSTGRES_SSL_KEY_PASSWORD}
- {id: sshPrivateKey, env: PGCDC_SSH_PRIVATE_KEY}
- {id: sshPassphrase, env: PGCDC_SSH_PASSPHRASE}
- {id: kafkaSaslPassword, env: PGCDC_KAFKA_SASL_PASSWORD}
- {id: kafkaSslCa, env: PGCDC_KAFKA_SSL_CA}
- {id: kafkaSslCert, env: PGCDC_KAFKA_SSL_CERT}
- {id: kafkaSslKey, env: PGCDC_KAFKA_SSL_KEY}
- {id: registryPassword, env: PGCDC_REGISTRY_PASSWORD}
- {id: registryToken, env: PGCDC_REGISTRY_TOKEN}
- {id: registryCa, env: PGCDC_REGISTRY_CA}
{{- end }}

{{/*
The pgcdc configuration file: .Values.config with http.port set to containerPort (and http.host
defaulting to 0.0.0.0). Fails when a sensitive setting is written in clear.
*/}}
{{- define "pgcdc.config" -}}
{{- $cfg := deepCopy (default dict .Values.config) }}
{{- $sensitive := list "postgres.password" "postgres.sslKey" "postgres.sslKeyPassword" "ssh.privateKey" "ssh.passphrase" "kafka.ssl.key" "kafka.sasl.password" "registry.password" "registry.token" }}
{{- range $path := $sensitive }}
{{- $node := $cfg }}
{{- $parts := splitList "." $path }}
{{- range $i, $part := $parts }}
{{- if kindIs "map" $node }}
{{- $node = get $node $part }}
{{- else }}
{{- $node = "" }}
{{- end }}
{{- end }}
{{- if and $node (not (hasPrefix "${" (toString $node))) }}
{{- fail (printf "config.%s is a secret: put it in the Secret %q (existingSecret.keys) instead of the ConfigMap, or reference an environment variable with ${VAR}" $path $.Values.existingSecret.name) }}
{{- end }}
{{- end }}
{{- $http := default dict (get $cfg "http") }}
{{- $_ := set $http "port" (int .Values.containerPort) }}
{{- if not (get $http "host") }}
{{- $_ := set $http "host" "0.0.0.0" }}
{{- end }}
{{- $_ := set $cfg "http" $http }}
{{- toYaml $cfg }}
{{- end }}

{{/* Label matchers of this release's series in alert expressions. */}}
{{- define "pgcdc.alertSelector" -}}
{{- if .Values.metrics.prometheusRule.selector }}
{{- .Values.metrics.prometheusRule.selector }}
{{- else }}
{{- printf "namespace=%q,service=%q" .Release.Namespace (include "pgcdc.fullname" .) }}
{{- end }}
{{- end }}
