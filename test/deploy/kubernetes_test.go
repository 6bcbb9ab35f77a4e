package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/linkbeat/linkbeat/internal/config"
)

const (
	k8sDir      = "deploy/kubernetes"
	metricsPort = 9089
)

// manifest is one YAML document of deploy/kubernetes.
type manifest struct {
	file string
	kind string
	name string
	json []byte
}

// readManifests reads every document of every YAML file under
// deploy/kubernetes.
func readManifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	root := repoFile(t, k8sDir)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(p) != ".yaml" && filepath.Ext(p) != ".yml") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if doc == nil {
				continue
			}
			j, err := json.Marshal(doc)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			var meta struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(j, &meta); err != nil || meta.Kind == "" {
				return fmt.Errorf("%s: a document without a kind", rel)
			}
			out = append(out, manifest{file: filepath.ToSlash(rel), kind: meta.Kind, name: meta.Metadata.Name, json: j})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeStrict decodes into the real API type and refuses unknown fields:
// a misspelt field would be dropped by kubectl, silently or with a warning.
func decodeStrict(m manifest, into any) error {
	dec := json.NewDecoder(bytes.NewReader(m.json))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return fmt.Errorf("%s: %s %s: %w", m.file, m.kind, m.name, err)
	}
	return nil
}

// k8sObjects are the decoded manifests, one of each kind.
type k8sObjects struct {
	ns        corev1.Namespace
	cm        corev1.ConfigMap
	ds        appsv1.DaemonSet
	svc       corev1.Service
	sm        monitoringv1.ServiceMonitor
	pm        monitoringv1.PodMonitor
	files     map[string]string // kind -> file
	kustomize []string
}

func loadK8s(t *testing.T) k8sObjects {
	t.Helper()
	var o k8sObjects
	o.files = map[string]string{}
	for _, m := range readManifests(t) {
		var into any
		switch m.kind {
		case "Namespace":
			into = &o.ns
		case "ConfigMap":
			into = &o.cm
		case "DaemonSet":
			into = &o.ds
		case "Service":
			into = &o.svc
		case "ServiceMonitor":
			into = &o.sm
		case "PodMonitor":
			into = &o.pm
		case "Kustomization":
			var k struct {
				APIVersion string   `json:"apiVersion"`
				Kind       string   `json:"kind"`
				Namespace  string   `json:"namespace"`
				Resources  []string `json:"resources"`
			}
			if err := decodeStrict(m, &k); err != nil {
				t.Fatal(err)
			}
			o.kustomize = k.Resources
			o.files[m.kind] = m.file
			continue
		default:
			t.Fatalf("%s: unexpected kind %s: teach this test what to check in it", m.file, m.kind)
		}
		if prev, ok := o.files[m.kind]; ok {
			t.Fatalf("%s: a second %s (the first is in %s)", m.file, m.kind, prev)
		}
		o.files[m.kind] = m.file
		if err := decodeStrict(m, into); err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range []string{"Namespace", "ConfigMap", "DaemonSet", "Service", "ServiceMonitor", "PodMonitor", "Kustomization"} {
		if _, ok := o.files[kind]; !ok {
			t.Fatalf("no %s under %s", kind, k8sDir)
		}
	}
	return o
}

// flagValues returns the values of --name=v and --name v in args.
func flagValues(args []string, name string) []string {
	var vals []string
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			vals = append(vals, v)
		} else if a == "--"+name && i+1 < len(args) {
			vals = append(vals, args[i+1])
		}
	}
	return vals
}

func TestKubernetesDaemonSet(t *testing.T) {
	o := loadK8s(t)
	ds := o.ds
	pod := ds.Spec.Template.Spec

	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("the DaemonSet's selector %v does not select its own pods %v (%v)", ds.Spec.Selector, ds.Spec.Template.Labels, err)
	}
	if !pod.HostNetwork {
		t.Error("hostNetwork is off: linkbeat must see the node's links, routes and bonds")
	}
	if pod.HostPID || pod.HostIPC {
		t.Errorf("hostPID=%v hostIPC=%v: linkbeat needs neither", pod.HostPID, pod.HostIPC)
	}
	if pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet with hostNetwork", pod.DNSPolicy)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged must be set, to false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	// Added capabilities are effective only for uid 0.
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0: Kubernetes grants added capabilities to root only")
	}
	caps := func(cs []corev1.Capability) []string {
		var out []string
		for _, c := range cs {
			out = append(out, strings.TrimPrefix(string(c), "CAP_"))
		}
		slices.Sort(out)
		return out
	}
	if got, want := caps(sc.Capabilities.Add), []string{"BPF", "NET_ADMIN", "NET_RAW", "PERFMON"}; !slices.Equal(got, want) {
		t.Errorf("capabilities added %v, want exactly %v", got, want)
	}
	if got := caps(sc.Capabilities.Drop); !slices.Equal(got, []string{"ALL"}) {
		t.Errorf("capabilities dropped %v, want [ALL]", got)
	}

	// Mounts: where each host directory appears, and how.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("mount %s: no volume %s", m.MountPath, m.Name)
			continue
		}
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional && !*sc.Privileged {
			t.Errorf("mount %s: Bidirectional propagation is only valid in a privileged container", m.MountPath)
		}
		mounts[m.MountPath] = m
	}
	for _, want := range []struct {
		mountPath, hostPath string
		readOnly            bool
	}{
		{"/sys/fs/bpf", "/sys/fs/bpf", false},
		{"/sys/kernel/tracing", "/sys/kernel/tracing", false},
		{"/sys/kernel/btf", "/sys/kernel/btf", true},
		{"/run/linkbeat", "/run/linkbeat", false},
	} {
		m, ok := mounts[want.mountPath]
		if !ok {
			t.Errorf("nothing mounted at %s", want.mountPath)
			continue
		}
		hp := vols[m.Name].HostPath
		if hp == nil || hp.Path != want.hostPath {
			t.Errorf("%s: volume %s is not hostPath %s", want.mountPath, m.Name, want.hostPath)
		}
		if m.ReadOnly != want.readOnly {
			t.Errorf("%s: readOnly %v, want %v", want.mountPath, m.ReadOnly, want.readOnly)
		}
	}
	if m := mounts["/sys/fs/bpf"]; m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationHostToContainer {
		t.Errorf("bpffs mount propagation %v, want HostToContainer (a bpffs the host mounts later must reach the pod)", m.MountPropagation)
	}

	// The flags point where the mounts are.
	args := c.Args
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("args %q: want `run` first (the image's ENTRYPOINT is the binary)", args)
	}
	cfgPaths := append(flagValues(args, "config.file"), flagValues(args, "config")...)
	if len(cfgPaths) != 1 {
		t.Fatalf("--config.file given %d times, want once", len(cfgPaths))
	}
	cfgPath := cfgPaths[0]
	cm, ok := mounts[path.Dir(cfgPath)]
	if !ok || vols[cm.Name].ConfigMap == nil {
		t.Fatalf("--config.file %s: no ConfigMap mounted at %s", cfgPath, path.Dir(cfgPath))
	}
	if ref := vols[cm.Name].ConfigMap; ref.Name != o.cm.Name || len(ref.Items) > 0 {
		t.Errorf("the config volume mounts ConfigMap %q (items %v), want all of %q", ref.Name, ref.Items, o.cm.Name)
	}
	if _, ok := o.cm.Data[path.Base(cfgPath)]; !ok {
		t.Errorf("--config.file %s: ConfigMap %s has no key %s", cfgPath, o.cm.Name, path.Base(cfgPath))
	}
	if got := flagValues(args, "state-dir"); len(got) != 1 || got[0] != "/run/linkbeat" {
		t.Errorf("--state-dir %v, want the mounted /run/linkbeat", got)
	}
	if got := flagValues(args, "bpffs-dir"); len(got) > 1 || (len(got) == 1 && !strings.HasPrefix(got[0], "/sys/fs/bpf/")) {
		t.Errorf("--bpffs-dir %v is not on the mounted bpffs", got)
	}

	// The exporter listens on 9089, on the node IP from the downward API.
	listen := flagValues(args, "web.listen-address")
	if len(listen) == 0 {
		t.Fatal("no --web.listen-address: the default is loopback, which Prometheus cannot reach")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	reachable := false
	for _, a := range listen {
		host, port, err := net.SplitHostPort(a)
		if err != nil || port != fmt.Sprint(metricsPort) {
			t.Errorf("--web.listen-address %s: want port %d (%v)", a, metricsPort, err)
			continue
		}
		if v, ok := strings.CutPrefix(host, "$("); ok {
			name := strings.TrimSuffix(v, ")")
			e, ok := env[name]
			if !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
				t.Errorf("--web.listen-address %s: $(%s) is not the downward API's status.hostIP", a, name)
			}
			reachable = true
		} else if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			reachable = true
		}
	}
	if !reachable {
		t.Errorf("--web.listen-address %v: none is reachable from Prometheus", listen)
	}
	var port *corev1.ContainerPort
	for i := range c.Ports {
		if c.Ports[i].Name == "metrics" {
			port = &c.Ports[i]
		}
	}
	if port == nil || port.ContainerPort != metricsPort {
		t.Fatalf("container port named metrics: %+v, want %d", port, metricsPort)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.String() != "metrics" && p.HTTPGet.Port.IntValue() != metricsPort {
			t.Errorf("%s probe on port %s, not the metrics port", name, p.HTTPGet.Port.String())
		}
	}
	checkLiveness(t, c.LivenessProbe)
	if ds.Spec.Template.Spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical: failover must not be evicted or preempted", ds.Spec.Template.Spec.PriorityClassName)
	}

	// Every flag is one `linkbeat run` has.
	help, err := exec.Command(builtBinary(t), "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("linkbeat run --help: %v\n%s", err, help)
	}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(a, "=")
		if !bytes.Contains(help, []byte(name+"=")) && !bytes.Contains(help, []byte(name+" ")) {
			t.Errorf("arg %s: `linkbeat run` has no flag %s", a, name)
		}
	}
}

// builtBinary builds the daemon with make into the test's temp dir.
func builtBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "linkbeat")
	if out, err := makeCmd(t, "build", "BIN="+bin); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	return bin
}

func TestKubernetesConfigMapIsValidConfig(t *testing.T) {
	o := loadK8s(t)
	if len(o.cm.Data) != 1 {
		t.Fatalf("ConfigMap %s has %d keys, want the one config file", o.cm.Name, len(o.cm.Data))
	}
	for key, body := range o.cm.Data {
		if _, err := config.Parse([]byte(body)); err != nil {
			t.Fatalf("ConfigMap %s, key %s: %v", o.cm.Name, key, err)
		}
		// And as the daemon's own `config check` reads it.
		f := filepath.Join(t.TempDir(), key)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(builtBinary(t), "config", "check", f).CombinedOutput(); err != nil {
			t.Fatalf("linkbeat config check %s: %v\n%s", key, err, out)
		}
	}
}

func TestKubernetesServiceAndMonitors(t *testing.T) {
	o := loadK8s(t)
	podLabels := labels.Set(o.ds.Spec.Template.Labels)

	svc := o.svc
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service clusterIP %q, want None (headless: one endpoint per node)", svc.Spec.ClusterIP)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service selector %v does not select the DaemonSet's pods %v", svc.Spec.Selector, podLabels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].Port != metricsPort {
		t.Errorf("Service ports %+v, want one named metrics on %d", svc.Spec.Ports, metricsPort)
	}
	if tp := svc.Spec.Ports[0].TargetPort; tp.String() != "metrics" && tp.IntValue() != metricsPort {
		t.Errorf("Service targetPort %s is not the container's metrics port", tp.String())
	}

	// The rules select job="linkbeat"; both monitors must produce it.
	rules := string(readFile(t, "deploy/prometheus/rules.yml"))
	if !strings.Contains(rules, `job="linkbeat"`) {
		t.Fatal(`deploy/prometheus/rules.yml no longer selects job="linkbeat": update the monitors' jobLabel check`)
	}
	sm := o.sm.Spec
	smSel, err := metav1.LabelSelectorAsSelector(&sm.Selector)
	if err != nil || smSel.Empty() || !smSel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select the Service's labels %v", sm.Selector, svc.Labels)
	}
	if o.sm.Namespace != svc.Namespace && !sm.NamespaceSelector.Any && !slices.Contains(sm.NamespaceSelector.MatchNames, svc.Namespace) {
		t.Errorf("ServiceMonitor in %s does not look in the Service's namespace %s", o.sm.Namespace, svc.Namespace)
	}
	if v := svc.Labels[sm.JobLabel]; v != "linkbeat" {
		t.Errorf("ServiceMonitor jobLabel %q gives job=%q, the rules expect linkbeat", sm.JobLabel, v)
	}
	if len(sm.Endpoints) != 1 || sm.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want port %s path /metrics", sm.Endpoints, svc.Spec.Ports[0].Name)
	}

	pm := o.pm.Spec
	pmSel, err := metav1.LabelSelectorAsSelector(&pm.Selector)
	if err != nil || pmSel.Empty() || !pmSel.Matches(podLabels) {
		t.Errorf("PodMonitor selector %v does not select the DaemonSet's pods %v", pm.Selector, podLabels)
	}
	if v := podLabels[pm.JobLabel]; v != "linkbeat" {
		t.Errorf("PodMonitor jobLabel %q gives job=%q, the rules expect linkbeat", pm.JobLabel, v)
	}
	if len(pm.PodMetricsEndpoints) != 1 || pm.PodMetricsEndpoints[0].Port == nil || *pm.PodMetricsEndpoints[0].Port != "metrics" || pm.PodMetricsEndpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor endpoints %+v, want the container port named metrics, path /metrics", pm.PodMetricsEndpoints)
	}
}

func TestKubernetesNamespaceAndKustomization(t *testing.T) {
	o := loadK8s(t)
	for _, m := range []metav1.ObjectMeta{o.cm.ObjectMeta, o.ds.ObjectMeta, o.svc.ObjectMeta, o.sm.ObjectMeta, o.pm.ObjectMeta} {
		if m.Namespace != o.ns.Name {
			t.Errorf("%s is in namespace %q, not %q", m.Name, m.Namespace, o.ns.Name)
		}
	}
	// hostNetwork, hostPath and CAP_BPF are admitted only at "privileged".
	if lvl := o.ns.Labels["pod-security.kubernetes.io/enforce"]; lvl != "privileged" {
		t.Errorf("namespace enforces pod security %q: the DaemonSet's pods would be refused", lvl)
	}
	// The kustomization applies the required manifests, not the optional
	// monitors (their CRDs may be absent).
	want := []string{o.files["Namespace"], o.files["ConfigMap"], o.files["DaemonSet"], o.files["Service"]}
	for _, f := range want {
		if !slices.Contains(o.kustomize, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
	for _, f := range o.kustomize {
		if _, err := os.Stat(filepath.Join(repoFile(t, k8sDir), f)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", f, err)
		}
		if f == o.files["ServiceMonitor"] || f == o.files["PodMonitor"] {
			t.Errorf("kustomization.yaml applies the optional %s", f)
		}
	}
}

// checkLiveness: the liveness probe asks the health endpoint tied to the
// event loop (cmd/linkbeat/health.go's healthPath), not / or /metrics,
// which answer while the loop is stuck.
func checkLiveness(t *testing.T, p *corev1.Probe) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("liveness probe %+v, want an httpGet", p)
	}
	want := goStringConst(t, "cmd/linkbeat/health.go", "healthPath")
	if p.HTTPGet.Path != want {
		t.Errorf("liveness probe path %q, want the health endpoint %q", p.HTTPGet.Path, want)
	}
	// The probe must not restart linkbeat sooner than the daemon's own
	// limit: at least defaultHealthLimit of silence before the restart.
	if window := p.PeriodSeconds * p.FailureThreshold; window < 20 {
		t.Errorf("liveness probe fails after %ds of failures: too eager for a daemon under a resync", window)
	}
}

// goStringConst reads a string constant from a Go file of the repository.
func goStringConst(t *testing.T, rel, name string) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), repoFile(t, rel), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	obj := f.Scope.Lookup(name)
	if obj == nil || obj.Kind != ast.Con {
		t.Fatalf("%s has no constant %s", rel, name)
	}
	lit, ok := obj.Decl.(*ast.ValueSpec).Values[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		t.Fatalf("%s.%s is not a string literal", rel, name)
	}
	v, err := strconv.Unquote(lit.Value)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
