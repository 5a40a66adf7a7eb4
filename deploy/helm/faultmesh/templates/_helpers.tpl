{{/* Base name of every object: the release name, with the chart's name unless it already holds it. */}}
{{- define "faultmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "faultmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What selects a component's pods; stable across upgrades. Call with (dict "root" $ "component" "x"). */}}
{{- define "faultmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faultmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels. Call with (dict "root" $ "component" "x"). */}}
{{- define "faultmesh.labels" -}}
{{ include "faultmesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "faultmesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "faultmesh.controllerName" -}}{{ include "faultmesh.fullname" . }}-controller{{- end -}}
{{- define "faultmesh.agentName" -}}{{ include "faultmesh.fullname" . }}-agent{{- end -}}

{{- define "faultmesh.webhookSecret" -}}
{{- default (printf "%s-webhook-certs" (include "faultmesh.fullname" .)) .Values.certs.webhookSecret -}}
{{- end -}}
{{- define "faultmesh.agentSecret" -}}
{{- default (printf "%s-agent-certs" (include "faultmesh.fullname" .)) .Values.certs.agentSecret -}}
{{- end -}}
{{- define "faultmesh.agentClientSecret" -}}
{{- default (printf "%s-agent-client-certs" (include "faultmesh.fullname" .)) .Values.certs.agentClientSecret -}}
{{- end -}}

{{/* The name agents' certificates are issued for, and that the controller checks them against. */}}
{{- define "faultmesh.agentServerName" -}}
{{- printf "%s.%s.svc" (include "faultmesh.agentName" .) .Release.Namespace -}}
{{- end -}}

{{/*
The certificates of the generate mode (in the controller mode, the agents' only), made once per
render and kept on the root context, so the Secrets, the webhooks' caBundle and the pods' checksum all
see the same ones. Secrets already in the
cluster (from an earlier install) are reused, so an upgrade does not break mTLS between old and new
pods; `helm template` cannot look them up and always makes new ones.
*/}}
{{- define "faultmesh.certs" -}}
{{- if not (hasKey . "faultmeshCerts") -}}
{{- /* certs.mode=controller: the webhook's certificates are the controller's business, not the chart's. */ -}}
{{- $webhookToo := ne .Values.certs.mode "controller" -}}
{{- $webhook := lookup "v1" "Secret" .Release.Namespace (include "faultmesh.webhookSecret" .) -}}
{{- $agent := lookup "v1" "Secret" .Release.Namespace (include "faultmesh.agentSecret" .) -}}
{{- $client := lookup "v1" "Secret" .Release.Namespace (include "faultmesh.agentClientSecret" .) -}}
{{- $certs := dict -}}
{{- if and (or $webhook (not $webhookToo)) $agent $client -}}
{{- if $webhookToo -}}
{{- $_ := set $certs "webhookCA" (index $webhook.data "ca.crt" | b64dec) -}}
{{- $_ := set $certs "webhookCert" (index $webhook.data "tls.crt" | b64dec) -}}
{{- $_ := set $certs "webhookKey" (index $webhook.data "tls.key" | b64dec) -}}
{{- end -}}
{{- $_ := set $certs "agentCA" (index $agent.data "ca.crt" | b64dec) -}}
{{- $_ := set $certs "agentCert" (index $agent.data "tls.crt" | b64dec) -}}
{{- $_ := set $certs "agentKey" (index $agent.data "tls.key" | b64dec) -}}
{{- $_ := set $certs "clientCert" (index $client.data "tls.crt" | b64dec) -}}
{{- $_ := set $certs "clientKey" (index $client.data "tls.key" | b64dec) -}}
{{- else -}}
{{- $days := int .Values.certs.validityDays -}}
{{- $service := include "faultmesh.controllerName" . -}}
{{- $namespace := .Release.Namespace -}}
{{- if $webhookToo -}}
{{- $webhookCA := genCA "faultmesh webhook CA" $days -}}
{{- $hosts := list (printf "%s.%s.svc" $service $namespace) (printf "%s.%s.svc.cluster.local" $service $namespace) (printf "%s.%s" $service $namespace) $service -}}
{{- $serving := genSignedCert (first $hosts) nil $hosts $days $webhookCA -}}
{{- $_ := set $certs "webhookCA" $webhookCA.Cert -}}
{{- $_ := set $certs "webhookCert" $serving.Cert -}}
{{- $_ := set $certs "webhookKey" $serving.Key -}}
{{- end -}}
{{- /* A second CA for agent mTLS: the agents trust nothing the webhook's CA signs. */ -}}
{{- $agentCA := genCA "faultmesh agent CA" $days -}}
{{- $agentName := include "faultmesh.agentServerName" . -}}
{{- $agentServer := genSignedCert $agentName nil (list $agentName "localhost") $days $agentCA -}}
{{- $agentClient := genSignedCert "faultmesh-controller" nil nil $days $agentCA -}}
{{- $_ := set $certs "agentCA" $agentCA.Cert -}}
{{- $_ := set $certs "agentCert" $agentServer.Cert -}}
{{- $_ := set $certs "agentKey" $agentServer.Key -}}
{{- $_ := set $certs "clientCert" $agentClient.Cert -}}
{{- $_ := set $certs "clientKey" $agentClient.Key -}}
{{- end -}}
{{- $_ := set . "faultmeshCerts" $certs -}}
{{- end -}}
{{- end -}}

{{/* caBundle of the webhooks (base64), empty when something else injects it (cert-manager, the controller). */}}
{{- define "faultmesh.caBundle" -}}
{{- if eq .Values.certs.mode "generate" -}}
{{- include "faultmesh.certs" . -}}
{{- .faultmeshCerts.webhookCA | b64enc -}}
{{- else if .Values.certs.webhookCABundle -}}
{{- .Values.certs.webhookCABundle | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The names of the three webhook configurations (a JSON list), which certs.mode=controller lets the
controller patch. */}}
{{- define "faultmesh.webhookConfigurations" -}}
{{- $fullname := include "faultmesh.fullname" . -}}
{{- list (printf "%s-mutation" $fullname) (printf "%s-validation" $fullname) (printf "%s-validate-auth" $fullname) | toJson -}}
{{- end -}}

{{/* Rolls the pods when the certificates the chart generated change. */}}
{{- define "faultmesh.certsChecksum" -}}
{{- include "faultmesh.certs" . -}}
{{- .faultmeshCerts | toJson | sha256sum -}}
{{- end -}}

{{/* Refuse values that would deploy something broken, with a message naming the value. */}}
{{- define "faultmesh.checkValues" -}}
{{- if and (eq .Values.certs.mode "controller") .Values.certs.webhookCABundle -}}
{{- fail "certs.webhookCABundle: with certs.mode=controller the controller writes the webhooks' CA itself; leave it empty" -}}
{{- end -}}
{{- if and (eq .Values.certs.mode "secret") (not .Values.certs.webhookCABundle) (not (hasKey .Values.webhook.annotations "cert-manager.io/inject-ca-from")) -}}
{{- fail "certs.webhookCABundle: certs.mode=secret needs the webhook's CA (PEM) here, or a cert-manager.io/inject-ca-from annotation in webhook.annotations" -}}
{{- end -}}
{{- end -}}

{{/* One admission webhook entry. Call with a dict: name, path, resource, service, namespace, caBundle,
failurePolicy, timeoutSeconds. */}}
{{- define "faultmesh.webhook" -}}
- name: {{ .name }}
  clientConfig:
    {{- if .caBundle }}
    caBundle: {{ .caBundle }}
    {{- end }}
    service:
      name: {{ .service }}
      namespace: {{ .namespace }}
      path: {{ .path }}
      port: 443
  rules:
    - apiGroups: ["chaos-mesh.org"]
      apiVersions: ["v1alpha1"]
      operations: ["CREATE", "UPDATE"]
      resources: [{{ .resource | quote }}]
  failurePolicy: {{ .failurePolicy }}
  sideEffects: None
  admissionReviewVersions: ["v1"]
  timeoutSeconds: {{ int .timeoutSeconds }}
{{- end -}}
