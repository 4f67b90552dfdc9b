{{/* Names, labels and the pieces the control plane's and the agents' pods share. */}}

{{- define "legato.name" -}}
{{- default "legato" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "legato.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "legato.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "legato.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "legato.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selectorLabels: (dict "root" $ "component" "control-plane") */}}
{{- define "legato.selectorLabels" -}}
app.kubernetes.io/name: {{ include "legato.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "legato.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "legato.grpcService" -}}
{{- printf "%s-grpc" (include "legato.fullname" .) -}}
{{- end -}}

{{- define "legato.serverAddress" -}}
{{- if .Values.agents.server -}}
{{- .Values.agents.server -}}
{{- else -}}
{{- printf "%s.%s.svc:%v" (include "legato.grpcService" .) .Release.Namespace .Values.controlPlane.service.grpc.port -}}
{{- end -}}
{{- end -}}

{{- define "legato.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "legato.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/*
The agent's pod spec: (dict "root" $ "agent" ENTRY "daemon" BOOL). ENTRY is an item of
agents.deployments, or agents.daemonSet; agents.* gives what an entry does not.
*/}}
{{- define "legato.agentPodSpec" -}}
{{- $root := .root -}}
{{- $a := .agent -}}
{{- $common := $root.Values.agents -}}
{{- $labels := list -}}
{{- range $k, $v := ($a.labels | default dict) -}}
{{- $labels = append $labels (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- with $root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $common.terminationGracePeriodSeconds }}
{{- with $common.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- include "legato.podSecurityContext" . | nindent 2 }}
{{- with ($a.nodeSelector | default $common.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($a.tolerations | default $common.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($a.affinity | default $common.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: agent
    image: {{ include "legato.image" (dict "root" $root "image" $root.Values.image.agent) }}
    imagePullPolicy: {{ $root.Values.image.agent.pullPolicy }}
    args: ["agent"]
    env:
      {{- if .daemon }}
      - name: NODE_NAME
        valueFrom:
          fieldRef:
            fieldPath: spec.nodeName
      {{- end }}
      - name: LEGATO_AGENT_SERVER
        value: {{ include "legato.serverAddress" $root | quote }}
      {{- if .daemon }}
      - name: LEGATO_AGENT_TOKEN_FILE
        value: /etc/legato/agent-tokens/$(NODE_NAME)
      {{- else if $a.tokenSecret }}
      - name: LEGATO_AGENT_TOKEN_FILE
        value: /etc/legato/agent-token/{{ $a.tokenSecret.key | default "token" }}
      {{- end }}
      {{- if not .daemon }}
      - name: LEGATO_AGENT_NAME
        value: {{ $a.name | quote }}
      {{- end }}
      {{- if $common.tls.enabled }}
      - name: LEGATO_AGENT_CA
        value: /etc/legato/ca/{{ $common.tls.caSecret.key }}
      {{- end }}
      {{- if and .daemon $a.clientCertsSecret }}
      - name: LEGATO_AGENT_CERT
        value: /etc/legato/agent-certs/$(NODE_NAME).crt
      - name: LEGATO_AGENT_KEY
        value: /etc/legato/agent-certs/$(NODE_NAME).key
      {{- else if and (not .daemon) $a.clientCertSecret }}
      - name: LEGATO_AGENT_CERT
        value: /etc/legato/agent-cert/tls.crt
      - name: LEGATO_AGENT_KEY
        value: /etc/legato/agent-cert/tls.key
      {{- end }}
      {{- if and $a.connectionsSecret $a.connectionsSecret.name }}
      - name: LEGATO_AGENT_CONNECTIONS
        value: /etc/legato/connections/{{ $a.connectionsSecret.key | default "connections.yaml" }}
      {{- end }}
      {{- if $labels }}
      - name: LEGATO_AGENT_LABELS
        value: {{ join "," $labels | quote }}
      {{- end }}
      - name: LEGATO_AGENT_SLOTS
        value: {{ $a.slots | default $common.slots | quote }}
      - name: LEGATO_AGENT_GRACE
        value: {{ $common.grace | quote }}
      - name: LEGATO_AGENT_WORKDIR
        value: /var/lib/legato/work
      - name: LEGATO_AGENT_METRICS_LISTEN
        value: {{ printf "0.0.0.0:%v" $common.metricsPort | quote }}
      - name: LEGATO_AGENT_LOG_FORMAT
        value: json
      {{- with $common.pythonPath }}
      - name: PYTHONPATH
        value: {{ . | quote }}
      {{- end }}
      {{- with $common.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      {{- with $a.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- $envFrom := concat ($common.extraEnvFrom | default list) ($a.extraEnvFrom | default list) }}
    {{- with $envFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    ports:
      - name: metrics
        containerPort: {{ $common.metricsPort }}
        protocol: TCP
    # Liveness: the agent answers. A lost control plane never restarts it (its steps run
    # on); readiness says whether its stream is open.
    livenessProbe:
      httpGet:
        path: /metrics
        port: metrics
      initialDelaySeconds: 10
      periodSeconds: 20
      timeoutSeconds: 5
      failureThreshold: 3
    readinessProbe:
      exec:
        command: ["legato-healthcheck", "agent", "--connected"]
      initialDelaySeconds: 5
      periodSeconds: 10
      timeoutSeconds: 8
      failureThreshold: 3
    resources:
      {{- toYaml ($a.resources | default $common.resources) | nindent 6 }}
    securityContext:
      {{- include "legato.containerSecurityContext" . | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: work
        mountPath: /var/lib/legato/work
      {{- if $common.tls.enabled }}
      - name: ca
        mountPath: /etc/legato/ca
        readOnly: true
      {{- end }}
      {{- if .daemon }}
      - name: agent-tokens
        mountPath: /etc/legato/agent-tokens
        readOnly: true
      {{- else if $a.tokenSecret }}
      - name: agent-token
        mountPath: /etc/legato/agent-token
        readOnly: true
      {{- end }}
      {{- if and .daemon $a.clientCertsSecret }}
      - name: agent-certs
        mountPath: /etc/legato/agent-certs
        readOnly: true
      {{- else if and (not .daemon) $a.clientCertSecret }}
      - name: agent-cert
        mountPath: /etc/legato/agent-cert
        readOnly: true
      {{- end }}
      {{- if and $a.connectionsSecret $a.connectionsSecret.name }}
      - name: connections
        mountPath: /etc/legato/connections
        readOnly: true
      {{- end }}
      {{- with $common.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 1Gi
  - name: work
    emptyDir:
      sizeLimit: {{ $common.workdirSizeLimit }}
  {{- if $common.tls.enabled }}
  - name: ca
    secret:
      secretName: {{ required "agents.tls.caSecret.name is empty: name the Secret holding the CA of the control plane's certificate, or set agents.tls.enabled=false for a server without TLS" $common.tls.caSecret.name }}
      items:
        - key: {{ $common.tls.caSecret.key }}
          path: {{ $common.tls.caSecret.key }}
  {{- end }}
  {{- if .daemon }}
  - name: agent-tokens
    secret:
      secretName: {{ required "agents.daemonSet.tokensSecret is empty: name the Secret holding one enrolment token per node name" $a.tokensSecret }}
      defaultMode: 0440
  {{- else if $a.tokenSecret }}
  - name: agent-token
    secret:
      secretName: {{ required (printf "agents.deployments[%s].tokenSecret.name is empty: name the Secret holding its enrolment token" $a.name) $a.tokenSecret.name }}
      defaultMode: 0440
      items:
        - key: {{ $a.tokenSecret.key | default "token" }}
          path: {{ $a.tokenSecret.key | default "token" }}
  {{- end }}
  {{- if and .daemon $a.clientCertsSecret }}
  - name: agent-certs
    secret:
      secretName: {{ $a.clientCertsSecret }}
      defaultMode: 0440
  {{- else if and (not .daemon) $a.clientCertSecret }}
  - name: agent-cert
    secret:
      secretName: {{ $a.clientCertSecret }}
      defaultMode: 0440
  {{- end }}
  {{- if and $a.connectionsSecret $a.connectionsSecret.name }}
  - name: connections
    secret:
      secretName: {{ $a.connectionsSecret.name }}
      defaultMode: 0440
      items:
        - key: {{ $a.connectionsSecret.key | default "connections.yaml" }}
          path: {{ $a.connectionsSecret.key | default "connections.yaml" }}
  {{- end }}
  {{- with $common.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
