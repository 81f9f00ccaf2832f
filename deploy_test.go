package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
			Ports []struct{ Port any }
		}
		Rules []struct {
			HTTP struct {
				Paths []struct {
					Path    string
					Backend struct {
						Service struct {
							Name string
							Port struct {
								Name   string
								Number int
							}
						}
					}
				}
			}
		}
	}
	StringData map[string]string
}

type podSpec struct {
	TerminationGracePeriodSeconds int
	SecurityContext               struct {
		RunAsNonRoot bool
		RunAsUser    *int64
		RunAsGroup   *int64
		FSGroup      *int64
	}
	Volumes []struct {
		Name   string
		Secret *struct {
			SecretName  string
			DefaultMode *int
			Items       []struct{ Key, Path string }
		}
	}
	Containers []struct {
		Name  string
		Args  []string
		Env   []struct{ Name, Value string }
		Ports []struct {
			Name          string
			ContainerPort int
		}
		VolumeMounts []struct {
			Name      string
			MountPath string
			ReadOnly  bool
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
	adminPort := 0
	for _, p := range objs["Deployment/occase-db"].Spec.Template.Spec.Containers[0].Ports {
		if p.Name == "metrics" {
			adminPort = p.ContainerPort
		}
	}
	ingressNS := ""
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if fmt.Sprint(p.Port) == "8080" || p.Port == "http" {
				ingressNS = r.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]
			}
		}
	}
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if fmt.Sprint(p.Port) != strconv.Itoa(adminPort) && p.Port != "metrics" {
				continue
			}
			for _, f := range r.From {
				if f.NamespaceSelector != nil && f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == ingressNS {
					t.Errorf("NetworkPolicy admits the ingress namespace %q to the admin port %d (/metrics, /admin/)", ingressNS, adminPort)
				}
			}
		}
		if len(r.Ports) == 0 {
			t.Errorf("NetworkPolicy rule without ports admits the admin port %d too", adminPort)
		}
	}
	checkAdminToken(t, objs)
	ing := objs["Ingress/occase"]
	// The ingress routes the Services' http port only: the moderation API
	// lives on the admin port, which no Service names.
	for _, r := range ing.Spec.Rules {
		for _, p := range r.HTTP.Paths {
			svc := objs["Service/"+p.Backend.Service.Name]
			if p.Backend.Service.Port.Name != "http" || len(svc.Spec.Ports) == 0 {
				t.Errorf("ingress path %s goes to %+v, want a Service's http port", p.Path, p.Backend.Service)
			}
			if strings.Contains(p.Path, "admin") {
				t.Errorf("ingress routes %s", p.Path)
			}
		}
	}
	if len(ing.Spec.Rules) == 0 {
		t.Error("ingress without rules")
	}
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
	// The admin port (metrics, the moderation API) is published on the
	// host's loopback only, for an operator's ssh -L.
	for _, m := range regexp.MustCompile(`"([^"]+):9090"`).FindAllStringSubmatch(string(cy), -1) {
		if !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(m[1]) {
			t.Errorf("compose.yaml publishes the admin port as %q: bind it to 127.0.0.1", m[0])
		}
	}
	// db1 and db2 get the admin token as a secret file named by
	// OCCASE_ADMIN_TOKEN_FILE; img does not.
	_, dbEnv, _ := strings.Cut(string(cy), "x-db-env:")
	dbEnv, _, _ = strings.Cut(dbEnv, "services:")
	if !strings.Contains(dbEnv, "OCCASE_ADMIN_TOKEN_FILE: /run/secrets/occase_admin_token") {
		t.Error("compose.yaml: the db nodes have no OCCASE_ADMIN_TOKEN_FILE")
	}
	for _, svc := range []string{"db1", "db2"} {
		_, body, _ := strings.Cut(string(cy), "\n  "+svc+":\n")
		body, _, _ = strings.Cut(body, "\n\n")
		if !regexp.MustCompile(`secrets: \[[^\]]*\boccase_admin_token\b`).MatchString(body) {
			t.Errorf("compose.yaml: %s does not mount the occase_admin_token secret", svc)
		}
	}
	if strings.Contains(img, "admin_token") || strings.Contains(img, "ADMIN_TOKEN") {
		t.Error("compose.yaml: img gets the admin token, which it has no use for")
	}
	if !strings.Contains(string(cy), "occase_admin_token:\n    file: ./secrets/admin-token") {
		t.Error("compose.yaml: no occase_admin_token secret from make-secrets.sh's secrets/admin-token")
	}
}

// make-secrets.sh writes the three keys once, 64 hex characters, mode
// 0600, and keeps them on a second run; as root it hands them to the
// image's user.
func TestComposeMakeSecrets(t *testing.T) {
	dir := t.TempDir()
	script, err := os.ReadFile("deploy/compose/make-secrets.sh")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "make-secrets.sh"), script, 0o755)
	names := []string{"secret.hex", "image-key.hex", "admin-token"}
	read := func() map[string]string {
		t.Helper()
		m := map[string]string{}
		for _, n := range names {
			p := filepath.Join(dir, "secrets", n)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(b) {
				t.Errorf("%s: %q, want 64 hex characters (32 random bytes)", n, b)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", n, fi.Mode().Perm())
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Getuid() == 0 && (st.Uid != 65532 || st.Gid != 65532) {
				t.Errorf("%s: owned by %d:%d, want 65532:65532 (the image's user) when run as root", n, st.Uid, st.Gid)
			}
			m[n] = string(b)
		}
		return m
	}
	for i := 0; i < 2; i++ {
		if out, err := exec.Command("sh", filepath.Join(dir, "make-secrets.sh")).CombinedOutput(); err != nil {
			t.Fatalf("make-secrets.sh: %v\n%s", err, out)
		}
	}
	first := read()
	if first["admin-token"] == first["secret.hex"] || first["admin-token"] == first["image-key.hex"] {
		t.Error("the admin token repeats another key")
	}
	// An existing token (an operator's own, of another length) is kept.
	own := strings.Repeat("ab", 40)
	os.WriteFile(filepath.Join(dir, "secrets", "admin-token"), []byte(own), 0o600)
	if out, err := exec.Command("sh", filepath.Join(dir, "make-secrets.sh")).CombinedOutput(); err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "secrets", "admin-token")); string(b) != own {
		t.Errorf("a second run replaced the admin token: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "secrets", "secret.hex")); string(b) != first["secret.hex"] {
		t.Error("a second run replaced secret.hex")
	}
}

// The compose balancer, run for real in front of a stand-in node: the
// public frontend never forwards /admin/ paths however they are spelled,
// and forwards the rest.
func TestComposeBalancerRefusesAdmin(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy not installed")
	}
	var mu sync.Mutex
	var seen []string
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" { // the balancer's health checks
			mu.Lock()
			seen = append(seen, r.RequestURI)
			mu.Unlock()
		}
		io.WriteString(w, "node")
	}))
	defer node.Close()
	b, err := os.ReadFile("deploy/compose/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	pub, stats := freeAddr(t), freeAddr(t)
	backend := strings.TrimPrefix(node.URL, "http://")
	cfg := string(b)
	for old, repl := range map[string]string{
		"bind :8080": "bind " + pub, "bind :8404": "bind " + stats,
		"maxconn 400000": "maxconn 100",
		"db1:8080":       backend, "db2:8080": backend, "img:8080": backend,
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("haproxy.cfg lacks %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	// Only the loopback stand-in: no resolver (Docker's) is asked.
	cfg = regexp.MustCompile(`(?m) resolvers docker|^resolvers docker\n(    .*\n)*`).ReplaceAllString(cfg, "")
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(path, []byte(cfg), 0o600)
	cmd := exec.Command("haproxy", "-db", "-f", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	get := func(p string) (int, string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", pub, time.Second)
		if err != nil {
			return 0, err.Error()
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		// Written by hand: Go's client would clean some of these paths.
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", p)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get("/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not forward /readyz:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []string{"/", "/ws", "/0123456789abcdef0123456789abcdef/x.jpg", "/administrator", "/posts/admin/"} {
		if code, body := get(p); code != 200 || body != "node" {
			t.Errorf("GET %s: %d %q, want it forwarded", p, code, body)
		}
	}
	mu.Lock()
	before := len(seen)
	mu.Unlock()
	for _, p := range []string{"/admin", "/admin/", "/admin/v1/reports", "/admin/admin.js", "//admin/v1/bans",
		"/%61dmin/v1/reports", "/ADMIN/", "/admin?x=1", "/%2Fadmin/"} {
		if code, body := get(p); code != 404 || body == "node" {
			t.Errorf("GET %s: %d %q, want 404 from the balancer", p, code, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != before {
		t.Errorf("the node saw %v", seen[before:])
	}
}

// checkAdminToken: the db pods get the Secret's admin-token key as a file,
// readable by their user, named by OCCASE_ADMIN_TOKEN_FILE; secret.yaml
// shows the key. img and the sweep get no token (no moderation there).
func checkAdminToken(t *testing.T, objs map[string]k8sObject) {
	t.Helper()
	pod := objs["Deployment/occase-db"].Spec.Template.Spec
	c := pod.Containers[0]
	file := ""
	for _, e := range c.Env {
		if e.Name == "OCCASE_ADMIN_TOKEN_FILE" {
			file = e.Value
		}
	}
	if file == "" {
		t.Fatal("db: no OCCASE_ADMIN_TOKEN_FILE: the moderation API is off")
	}
	found := false
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(file, m.MountPath+"/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil || v.Secret.SecretName != "occase" {
				continue
			}
			for _, it := range v.Secret.Items {
				if it.Key == "admin-token" && m.MountPath+"/"+it.Path == file {
					found = true
				}
			}
			if !m.ReadOnly {
				t.Errorf("db: the token's volume %s is mounted writable", m.Name)
			}
			// Secret files are root's: the user needs group read through fsGroup.
			if mode := v.Secret.DefaultMode; mode == nil || *mode&0o040 == 0 || *mode&0o007 != 0 ||
				pod.SecurityContext.FSGroup == nil || *pod.SecurityContext.FSGroup != *pod.SecurityContext.RunAsGroup {
				t.Errorf("db: token defaultMode %s, fsGroup %s: want group-readable, not world, with fsGroup the pod's group",
					deref(mode), deref(pod.SecurityContext.FSGroup))
			}
		}
	}
	if !found {
		t.Errorf("db: OCCASE_ADMIN_TOKEN_FILE %s is not the occase Secret's admin-token key mounted as a file", file)
	}
	out, err := exec.Command("kubectl", "annotate", "--local", "-f", "deploy/kubernetes/secret.yaml", "-o", "json", "checked=yes").Output()
	if err != nil {
		t.Fatalf("secret.yaml: %v", err)
	}
	var sec k8sObject
	if err := json.Unmarshal(out, &sec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"secret", "image-key", "admin-token"} {
		if sec.StringData[k] == "" {
			t.Errorf("secret.yaml lacks %s", k)
		}
	}
	b, _ := os.ReadFile("deploy/kubernetes/secret.yaml")
	if !strings.Contains(string(b), "--from-literal=admin-token=") {
		t.Error("secret.yaml does not say how to make the admin token")
	}
	for _, f := range []string{"img.yaml", "imggc.yaml"} {
		if b, _ := os.ReadFile("deploy/kubernetes/" + f); strings.Contains(string(b), "admin-token") || strings.Contains(string(b), "ADMIN_TOKEN") {
			t.Errorf("%s gets the admin token, which it has no use for", f)
		}
	}
}

func deref[T int | int64](p *T) string {
	if p == nil {
		return "unset"
	}
	return "0" + strconv.FormatInt(int64(*p), 8)
}
