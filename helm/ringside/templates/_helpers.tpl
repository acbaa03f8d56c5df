{{/*
Named templates that put ringside into a pod. Each takes a context whose .Values are
this chart's values and whose .Release is the release:
  - in this chart:                  (include "ringside.sidecar" .)
  - in an app chart depending on it: (include "ringside.sidecar"
                                       (dict "Values" .Values.ringside "Release" .Release))
They read nothing else (no .Chart, no .Capabilities), so both contexts render the same.

  ringside.sidecar          the container (a list item), for containers: (or
                            initContainers: with nativeSidecar)
  ringside.volumes          its volumes (list items), for the pod's volumes:
  ringside.appVolumeMounts  the socket volume mount (a list item), for the app container
  ringside.podAnnotations   Prometheus scrape annotations and the config checksum
  ringside.socketPath       the socket's path, e.g. for the app's environment
*/}}

{{/* The ConfigMap holding config.json. */}}
{{- define "ringside.configMapName" -}}
{{- if .Values.ringside.existingConfigMap -}}
{{- .Values.ringside.existingConfigMap -}}
{{- else -}}
{{- printf "%s-ringside" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ringside.labels" -}}
app.kubernetes.io/name: ringside
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Values.image.tag | toString | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end -}}

{{/* listen.socket of the config (the daemon's default if unset). */}}
{{- define "ringside.socketPath" -}}
{{- dig "listen" "socket" "/run/ringside/ringside.sock" .Values.ringside.config -}}
{{- end -}}

{{- define "ringside.socketDir" -}}
{{- include "ringside.socketPath" . | dir -}}
{{- end -}}

{{- define "ringside.stateDir" -}}
{{- dig "state_dir" "/var/lib/ringside" .Values.ringside.config -}}
{{- end -}}

{{/* "true" when the config leaves the HTTP endpoint on, else "". */}}
{{- define "ringside.httpEnabled" -}}
{{- if dig "http" "enabled" true .Values.ringside.config -}}true{{- end -}}
{{- end -}}

{{/* The port of http.address (host:port, [v6]:port). */}}
{{- define "ringside.httpPort" -}}
{{- dig "http" "address" "127.0.0.1:9317" .Values.ringside.config | splitList ":" | last -}}
{{- end -}}

{{/* CONSUL_HTTP_ADDR: consul.address, else the node's agent through the downward API. */}}
{{- define "ringside.consulAddress" -}}
{{- if .Values.consul.address -}}
{{- .Values.consul.address -}}
{{- else -}}
{{- printf "%s://$(HOST_IP):%v" .Values.consul.agentScheme .Values.consul.agentPort -}}
{{- end -}}
{{- end -}}

{{- define "ringside.podAnnotations" -}}
checksum/ringside-config: {{ toJson .Values.ringside.config | sha256sum | quote }}
{{- if and .Values.metrics.scrape (include "ringside.httpEnabled" .) }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "ringside.httpPort" . | quote }}
prometheus.io/path: {{ .Values.metrics.path | quote }}
{{- end }}
{{- end -}}

{{- define "ringside.sidecar" -}}
- name: ringside
  image: {{ printf "%s:%s" .Values.image.repository (toString .Values.image.tag) | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .Values.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  args: ["--config", "/etc/ringside/config.json"]
  env:
    - name: HOST_IP
      valueFrom:
        fieldRef:
          fieldPath: status.hostIP
    - name: CONSUL_HTTP_ADDR
      value: {{ include "ringside.consulAddress" . | quote }}
    {{- if .Values.consul.token.secretName }}
    - name: CONSUL_HTTP_TOKEN_FILE
      value: /var/run/secrets/ringside/consul-token
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if include "ringside.httpEnabled" . }}
  ports:
    - name: ringside-http
      containerPort: {{ include "ringside.httpPort" . }}
      protocol: TCP
  {{- with .Values.probes.liveness }}
  {{- if .enabled }}
  livenessProbe:
    httpGet:
      path: {{ .path }}
      port: ringside-http
    initialDelaySeconds: {{ .initialDelaySeconds }}
    periodSeconds: {{ .periodSeconds }}
    timeoutSeconds: {{ .timeoutSeconds }}
    failureThreshold: {{ .failureThreshold }}
  {{- end }}
  {{- end }}
  {{- with .Values.probes.readiness }}
  {{- if .enabled }}
  readinessProbe:
    httpGet:
      path: {{ .path }}
      port: ringside-http
    initialDelaySeconds: {{ .initialDelaySeconds }}
    periodSeconds: {{ .periodSeconds }}
    timeoutSeconds: {{ .timeoutSeconds }}
    failureThreshold: {{ .failureThreshold }}
  {{- end }}
  {{- end }}
  {{- end }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: ringside-socket
      mountPath: {{ include "ringside.socketDir" . }}
    - name: ringside-config
      mountPath: /etc/ringside
      readOnly: true
    - name: ringside-state
      mountPath: {{ include "ringside.stateDir" . }}
    {{- if .Values.consul.token.secretName }}
    - name: ringside-consul-token
      mountPath: /var/run/secrets/ringside
      readOnly: true
    {{- end }}
{{- end -}}

{{- define "ringside.appVolumeMounts" -}}
- name: ringside-socket
  mountPath: {{ include "ringside.socketDir" . }}
{{- end -}}

{{- define "ringside.volumes" -}}
{{- $socket := dict }}
{{- with .Values.socket.medium }}{{ $_ := set $socket "medium" . }}{{ end }}
{{- with .Values.socket.sizeLimit }}{{ $_ := set $socket "sizeLimit" . }}{{ end -}}
- name: ringside-socket
  emptyDir: {{ toJson $socket }}
- name: ringside-config
  configMap:
    name: {{ include "ringside.configMapName" . }}
    items:
      - key: config.json
        path: config.json
- name: ringside-state
  {{- if .Values.state.volume }}
  {{- toYaml .Values.state.volume | nindent 2 }}
  {{- else }}
  emptyDir: {{ with .Values.state.emptyDirSizeLimit }}{{ dict "sizeLimit" . | toJson }}{{ else }}{}{{ end }}
  {{- end }}
{{- if .Values.consul.token.secretName }}
- name: ringside-consul-token
  secret:
    secretName: {{ .Values.consul.token.secretName }}
    defaultMode: 0444
    items:
      - key: {{ .Values.consul.token.secretKey }}
        path: consul-token
{{- end }}
{{- end -}}
