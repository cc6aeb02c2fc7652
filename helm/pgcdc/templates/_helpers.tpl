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
- {id: httpToken, env: PGCDC_HTTP_AUTH_TOKEN}
- {id: httpReadToken, env: PGCDC_HTTP_AUTH_READ_TOKEN}
- {id: httpPassword, env: PGCDC_HTTP_AUTH_PASSWORD}
- {id: httpTlsCert, env: PGCDC_HTTP_TLS_CERT}
- {id: httpTlsKey, env: PGCDC_HTTP_TLS_KEY}
- {id: httpTlsClientCa, env: PGCDC_HTTP_TLS_CLIENT_CA}
{{- end }}

{{/* "true" when the pod serves HTTPS: a certificate from the Secret or in config. */}}
{{- define "pgcdc.httpTls" -}}
{{- $tls := default dict (get (default dict .Values.config.http) "tls") }}
{{- if or .Values.existingSecret.keys.httpTlsCert (get $tls "cert") }}true{{ end }}
{{- end }}

{{/*
Refuses values that would let any pod able to reach the Service change the connector: while
config.http.mutations is not false, an operator credential must reach the pod (the token from the
Secret, a ${VAR} token, basic auth with the password from the Secret, or client certificates).
Also refuses a ServiceMonitor that could not scrape protected metrics.
*/}}
{{- define "pgcdc.checkAccess" -}}
{{- $http := default dict .Values.config.http }}
{{- $auth := default dict (get $http "auth") }}
{{- $tls := default dict (get $http "tls") }}
{{- $keys := .Values.existingSecret.keys }}
{{- $mutations := ne (toString (get $http "mutations")) "false" }}
{{- $clientCa := or $keys.httpTlsClientCa (get $tls "clientCa") }}
{{- $certOperator := and $clientCa (ne (toString (get $tls "clientCertRole")) "read") }}
{{- $basic := and $keys.httpPassword (get $auth "username") }}
{{- if and $mutations (not (or $keys.httpToken (get $auth "token") $basic $certOperator)) }}
{{- fail "existingSecret.keys.httpToken: required while config.http.mutations is on (else any pod that reaches the Service may pause or restart the connector): name the Secret key that holds the operator token, or set config.http.mutations: false" }}
{{- end }}
{{- $sm := .Values.metrics.serviceMonitor }}
{{- if and $sm.enabled (eq (toString (get $auth "protectReads")) "true") (not (and $sm.bearerTokenSecret $sm.bearerTokenSecret.name)) (not (get (default dict $sm.tlsConfig) "keySecret")) }}
{{- fail "metrics.serviceMonitor.bearerTokenSecret: required when config.http.auth.protectReads is true (Prometheus must send a token to read /metrics), e.g. {name: pgcdc-credentials, key: http-read-token}" }}
{{- end }}
{{- end }}

{{/*
The pgcdc configuration file: .Values.config with http.port set to containerPort (and http.host
defaulting to 0.0.0.0). Fails when a sensitive setting is written in clear.
*/}}
{{- define "pgcdc.config" -}}
{{- $cfg := deepCopy (default dict .Values.config) }}
{{- $sensitive := list "postgres.password" "postgres.sslKey" "postgres.sslKeyPassword" "ssh.privateKey" "ssh.passphrase" "kafka.ssl.key" "kafka.sasl.password" "registry.password" "registry.token" "http.auth.token" "http.auth.readToken" "http.auth.password" "http.tls.key" }}
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
