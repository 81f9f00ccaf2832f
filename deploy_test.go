package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/occase/occase/roles"
)

type k8sObject struct {
	Kind     string
	Metadata struct {
		Name        string
		Annotations map[string]string
	}
	Spec struct {
		Template *struct {
			Metadata struct{ Annotations map[string]string }
			Spec     podSpec
		}
		Ports []struct {
			Name       string
			TargetPort any
		}
		PodSelector struct{ MatchLabels map[string]string }
		Ingress     []struct {
			From []struct {
				NamespaceSelector *struct{ MatchLabels map[string]string }
				PodSelector       *struct{ MatchLabels map[string]string }
				IPBlock           *struct{ CIDR string }
			}
		}
	}
}

type podSpec struct {
	TerminationGracePeriodSeconds int
	SecurityContext               struct {
		RunAsNonRoot bool
		RunAsUser    *int64
		RunAsGroup   *int64
	}
	Containers []struct {
		Name  string
		Args  []string
		Env   []struct{ Name, Value string }
		Ports []struct {
			Name          string
			ContainerPort int
		}
		Lifecycle struct {
			PreStop struct{ Sleep struct{ Seconds int } }
		}
		Resources struct {
			Limits struct{ Memory string }
		}
	}
}

// quantity reads the memory sizes the manifests use (Mi, Gi, MiB, mb, m).
func quantity(t *testing.T, s string) int64 {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)([A-Za-z]*)$`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("size %q", s)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	switch strings.ToLower(m[2]) {
	case "":
		return n
	case "m", "mi", "mib":
		return n << 20
	case "g", "gi", "gib":
		return n << 30
	case "mb":
		return n * 1_000_000
	case "gb":
		return n * 1_000_000_000
	}
	t.Fatalf("unit of %q", s)
	return 0
}

// The Kubernetes example is rendered by kubectl (kustomize, then to JSON
// without a cluster) and checked for what the operator's run broke: a
// named image user that the kubelet refuses with runAsNonRoot, /metrics on
// a routed port, an ingress body limit below the upload limit, Redis
// without maxmemory, limits without GOMEMLIMIT. Not a schema check: that
// needs an API server or downloaded schemas (deploy/README.md).
func TestKubernetesManifests(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl not installed")
	}
	rendered, err := exec.Command("kubectl", "kustomize", "deploy/kubernetes").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	cmd := exec.Command("kubectl", "annotate", "--local", "-f", "-", "-o", "json", "checked=yes")
	cmd.Stdin = bytes.NewReader(rendered)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl annotate --local: %v", err)
	}
	objs := map[string]k8sObject{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var o k8sObject
		if err := dec.Decode(&o); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	d := roles.DefaultConfig()
	for _, name := range []string{"Deployment/occase-db", "Deployment/occase-img", "StatefulSet/redis"} {
		o, ok := objs[name]
		if !ok || o.Spec.Template == nil {
			t.Fatalf("%s missing from the rendered set", name)
		}
		pod := o.Spec.Template.Spec
		sc := pod.SecurityContext
		if !sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsGroup == nil {
			t.Errorf("%s: runAsNonRoot needs a numeric non-zero runAsUser and runAsGroup: %+v", name, sc)
		}
		c := pod.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		limit := quantity(t, c.Resources.Limits.Memory)
		if name == "StatefulSet/redis" {
			args := strings.Join(c.Args, " ")
			m := regexp.MustCompile(`--maxmemory (\S+)`).FindStringSubmatch(args)
			if m == nil || !strings.Contains(args, "--maxmemory-policy noeviction") {
				t.Errorf("redis args %q: want --maxmemory and noeviction", args)
			} else if mm := quantity(t, m[1]); mm >= limit*9/10 {
				t.Errorf("redis maxmemory %s leaves no room under the %s limit", m[1], c.Resources.Limits.Memory)
			}
			continue
		}
		if sc.RunAsUser != nil && *sc.RunAsUser != 65532 {
			t.Errorf("%s runs as %d, the image's user is 65532", name, *sc.RunAsUser)
		}
		admin := env["OCCASE_ADMIN_ADDR"]
		ann := o.Spec.Template.Metadata.Annotations
		if admin == "" || ":"+ann["prometheus.io/port"] != admin || ann["prometheus.io/scrape"] != "true" {
			t.Errorf("%s: OCCASE_ADMIN_ADDR %q and scrape annotations %v disagree", name, admin, ann)
		}
		if gm := env["GOMEMLIMIT"]; gm == "" || quantity(t, gm) >= limit {
			t.Errorf("%s: GOMEMLIMIT %q must be set below the %s limit", name, gm, c.Resources.Limits.Memory)
		}
		drain, err := time.ParseDuration(env["OCCASE_DRAIN_TIMEOUT"])
		if err != nil {
			t.Fatalf("%s: OCCASE_DRAIN_TIMEOUT: %v", name, err)
		}
		if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= drain+time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second {
			t.Errorf("%s: grace period %v does not cover preStop + drain", name, grace)
		}
		if env["OCCASE_TRUSTED_PROXIES"] == "" {
			t.Errorf("%s: no OCCASE_TRUSTED_PROXIES: every client counts as the ingress for the per-address limits (registrations, uploads)", name)
		}
	}
	for _, name := range []string{"Service/occase-db", "Service/occase-img"} {
		for _, p := range objs[name].Spec.Ports {
			if p.TargetPort != "http" {
				t.Errorf("%s routes %v: only the http port may be reachable through it", name, p.TargetPort)
			}
		}
	}
	// Trusting X-Forwarded-For from pod addresses is safe only while no
	// other pod may connect: the NetworkPolicy admits the occase pods'
	// ports from named namespaces only.
	np, ok := objs["NetworkPolicy/occase-from-ingress"]
	if !ok || np.Spec.PodSelector.MatchLabels["app"] != "occase" || len(np.Spec.Ingress) == 0 {
		t.Errorf("no NetworkPolicy restricting who reaches the occase pods: %+v", np.Spec)
	}
	for _, r := range np.Spec.Ingress {
		if len(r.From) == 0 {
			t.Errorf("NetworkPolicy rule without from: anyone may connect")
		}
		for _, f := range r.From {
			if f.NamespaceSelector == nil || len(f.NamespaceSelector.MatchLabels) == 0 {
				t.Errorf("NetworkPolicy source %+v is not one named namespace", f)
			}
		}
	}
	ing := objs["Ingress/occase"]
	if body := quantity(t, ing.Metadata.Annotations["nginx.ingress.kubernetes.io/proxy-body-size"]); body <= d.Images.MaxBytes {
		t.Errorf("ingress proxy-body-size %d refuses uploads occase accepts (--image-max-bytes %d)", body, d.Images.MaxBytes)
	}
}

// The compose example and the image, checked as text.
func TestComposeAndDockerfile(t *testing.T) {
	df, _ := os.ReadFile("Dockerfile")
	if !regexp.MustCompile(`(?m)^USER \d+:\d+$`).Match(df) {
		t.Error("Dockerfile: USER must be numeric (uid:gid) for runAsNonRoot")
	}
	if !strings.Contains(string(df), "-X main.version=") {
		t.Error("Dockerfile: the build does not set main.version")
	}
	cy, _ := os.ReadFile("deploy/compose/compose.yaml")
	for _, want := range []string{`"--maxmemory", "1gb", "--maxmemory-policy", "noeviction"`, "OCCASE_ADMIN_ADDR", "GOMEMLIMIT"} {
		if !strings.Contains(string(cy), want) {
			t.Errorf("compose.yaml lacks %s", want)
		}
	}
	// Every occase service (db1, db2 through the shared env, img its own)
	// believes the balancer's X-Forwarded-For.
	_, img, _ := strings.Cut(string(cy), "\n  img:\n")
	img, _, _ = strings.Cut(img, "\n  lb:\n")
	if !strings.Contains(img, "OCCASE_TRUSTED_PROXIES:") {
		t.Error("compose.yaml: img has no OCCASE_TRUSTED_PROXIES: every upload counts against the balancer's address")
	}
	if _, db, _ := strings.Cut(string(cy), "x-db-env:"); !strings.Contains(db[:strings.Index(db, "services:")], "OCCASE_TRUSTED_PROXIES:") {
		t.Error("compose.yaml: db has no OCCASE_TRUSTED_PROXIES")
	}
	if strings.Contains(string(cy), "9090:") {
		t.Error("compose.yaml publishes the admin port")
	}
}
