{{/* Names and labels. */}}
{{- define "orchestrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "orchestrator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orchestrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "orchestrator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "orchestrator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: daemon
{{- end -}}

{{- define "orchestrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "orchestrator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "orchestrator.leaseName" -}}
{{- default (include "orchestrator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* Where the daemon reads its desired state. */}}
{{- define "orchestrator.configDir" -}}
{{- if eq .Values.config.source "git" -}}
{{- printf "/git/current/%s" (.Values.config.git.path | trimPrefix "/") | trimSuffix "/" -}}
{{- else -}}
/etc/orchestrator/config
{{- end -}}
{{- end -}}

{{/*
The Secrets the daemon reads through the Kubernetes API, by name: the
secretRefs of the inline clusters and global accounts, and rbac.secretNames.
(The schema refuses a secretRef in another namespace: this release's Role
cannot grant it.)
*/}}
{{- define "orchestrator.readSecretNames" -}}
{{- $names := list -}}
{{- if eq .Values.config.source "values" -}}
{{- range .Values.config.clusters -}}
{{- $ref := dig "spec" "kubeconfig" "secretRef" dict . -}}
{{- if $ref -}}
{{- $names = append $names $ref.name -}}
{{- end -}}
{{- end -}}
{{- range .Values.config.globalAccounts -}}
{{- $ref := dig "spec" "credentials" "secretRef" dict . -}}
{{- if $ref -}}
{{- $names = append $names $ref.name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $names = concat $names .Values.rbac.secretNames | uniq | sortAlpha -}}
{{- toJson $names -}}
{{- end -}}

{{/* The restricted Pod Security profile, for every container. */}}
{{- define "orchestrator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "orchestrator.gitArgs" -}}
{{- $git := .Values.config.git -}}
{{- if $git.args -}}
{{- toYaml $git.args -}}
{{- else -}}
- --repo={{ $git.repository }}
- --ref={{ $git.ref }}
- --root=/git
- --link=current
- --period={{ $git.periodSeconds }}s
{{- end -}}
{{- end -}}

{{- define "orchestrator.gitContainer" -}}
{{- $git := .root.Values.config.git -}}
- name: {{ .name }}
  image: {{ printf "%s:%s" $git.image.repository (default "latest" $git.image.tag) | quote }}
  imagePullPolicy: {{ $git.image.pullPolicy }}
  args:
    {{- if and .init $git.initArgs }}
    {{- toYaml $git.initArgs | nindent 4 }}
    {{- else }}
    {{- include "orchestrator.gitArgs" .root | nindent 4 }}
    {{- if .init }}
    - --one-time
    {{- end }}
    {{- end }}
  env:
    - name: HOME
      value: /tmp
  {{- with $git.envFromSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  securityContext:
    {{- include "orchestrator.containerSecurityContext" .root | nindent 4 }}
  resources:
    {{- toYaml $git.resources | nindent 4 }}
  volumeMounts:
    - name: git
      mountPath: /git
    - name: git-tmp
      mountPath: /tmp
{{- end -}}

{{/* A setting as an environment value: lists comma-separated, whole numbers without exponent. */}}
{{- define "orchestrator.envValue" -}}
{{- if kindIs "slice" . -}}
{{- join "," . -}}
{{- else if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- printf "%d" (int64 .) -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}
