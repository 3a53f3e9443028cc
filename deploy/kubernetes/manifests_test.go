// Package kubernetes holds the test of regcache's Kubernetes manifests. It
// is its own Go module so that the Kubernetes API types it decodes them
// with stay out of regcache's dependencies.
package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomization.yaml the test reads.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
}

// decodeStrict decodes a YAML file into out, refusing unknown fields and
// duplicate keys.
func decodeStrict(t *testing.T, path string, out any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\n---")) {
		t.Fatalf("%s holds several documents; keep one object per file", path)
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestManifests decodes every resource of the kustomization strictly with
// the Kubernetes API types and checks what the mirror needs: a volume
// claim at /data, the Caddyfile from the ConfigMap at /etc/caddy, probes
// on /healthz (answered without credentials, as the ConfigMap's Caddyfile
// says), resource requests, a non-root user, and a Service on the port.
func TestManifests(t *testing.T) {
	var k kustomization
	decodeStrict(t, "kustomization.yaml", &k)
	if k.Kind != "Kustomization" || len(k.Labels) != 1 || k.Labels[0].Pairs["app.kubernetes.io/name"] != "regcache" || !k.Labels[0].IncludeSelectors {
		t.Fatalf("kustomization.yaml: %+v", k)
	}
	objects := map[string]any{}
	for _, r := range k.Resources {
		var meta struct {
			Kind string `json:"kind"`
		}
		b, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &meta); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		var obj any
		switch meta.Kind {
		case "StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "Service":
			obj = &corev1.Service{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		default:
			t.Fatalf("%s: unexpected kind %q", r, meta.Kind)
		}
		decodeStrict(t, r, obj)
		objects[meta.Kind] = obj
	}
	sts, ok1 := objects["StatefulSet"].(*appsv1.StatefulSet)
	svc, ok2 := objects["Service"].(*corev1.Service)
	cm, ok3 := objects["ConfigMap"].(*corev1.ConfigMap)
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("want a StatefulSet, a Service and a ConfigMap, got %v", objects)
	}

	caddyfile := cm.Data["Caddyfile"]
	for _, want := range []string{":5000 {", "respond /healthz 200", "storage /data/cache", "registry_cache {"} {
		if !strings.Contains(caddyfile, want) {
			t.Errorf("the ConfigMap's Caddyfile lacks %q", want)
		}
	}

	spec := sts.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("containers: %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 5000 || c.Ports[0].Name != "registry" {
		t.Errorf("container ports: %+v", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != intstr.FromString("registry") {
			t.Errorf("%s probe: %+v", name, p)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resource requests: %+v", c.Resources.Requests)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["data"] != "/data" || mounts["config"] != "/etc/caddy" {
		t.Errorf("volume mounts: %v", mounts)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" ||
		sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().IsZero() {
		t.Errorf("volume claim templates: %+v", sts.Spec.VolumeClaimTemplates)
	}
	configMapped := false
	for _, v := range spec.Volumes {
		if v.Name == "config" && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			configMapped = true
		}
	}
	if !configMapped {
		t.Errorf("no volume named config from the ConfigMap %s: %+v", cm.Name, spec.Volumes)
	}
	sc := spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.FSGroup == nil || *sc.FSGroup != 1000 {
		t.Errorf("pod security context: %+v", sc)
	}
	if sts.Spec.ServiceName != svc.Name {
		t.Errorf("serviceName %q, want the Service %q", sts.Spec.ServiceName, svc.Name)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 5000 || svc.Spec.Ports[0].TargetPort != intstr.FromString("registry") {
		t.Errorf("service ports: %+v", svc.Spec.Ports)
	}
	if got := fmt.Sprint(sts.Spec.Replicas); sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Errorf("replicas: %s", got)
	}
}
