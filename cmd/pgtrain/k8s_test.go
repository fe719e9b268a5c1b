package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"pgtrain/internal/health"
)

const k8sDir = "../../deploy/k8s"

// No Kubernetes cluster runs in CI, so the manifests are checked the way the API server and
// kustomize would read them, and against the binary: every file decodes strictly into the
// Kubernetes API types (an unknown or misspelt field is an error), the overlay renders with
// kustomize, and every pgtrain container's command line, PGTRAIN_* variable, mounted secret
// file and probe is checked against the real flag sets and routes.
func TestKubernetesManifestsMatchTheBinary(t *testing.T) {
	// Every file on its own, before kustomize touches it.
	err := filepath.WalkDir(k8sDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if d.Name() == "kustomization.yaml" {
			var k kustypes.Kustomization
			if err := yaml.UnmarshalStrict(b, &k); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			return nil
		}
		if _, err := decodeManifests(b); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	c := renderOverlay(t, "overlays/small")
	checkNATS(t, c)
	checkRoles(t, c)
	checkNetworkPolicies(t, c)
}

// cluster is a rendered overlay, by kind and name.
type cluster struct {
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	services     map[string]*corev1.Service
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	pdbs         map[string]*policyv1.PodDisruptionBudget
	policies     map[string]*networkingv1.NetworkPolicy
	namespaces   map[string]*corev1.Namespace
	// secretValues are the secret files given to kustomize: none may show outside a Secret.
	secretValues []string
	rendered     []byte
}

// workload is a Deployment's or a StatefulSet's pod template with what it is.
type workload struct {
	kind, name string
	replicas   int32
	pod        corev1.PodTemplateSpec
}

func (c *cluster) workloads() []workload {
	var ws []workload
	for n, d := range c.deployments {
		ws = append(ws, workload{"Deployment", n, ptrValue(d.Spec.Replicas), d.Spec.Template})
	}
	for n, s := range c.statefulSets {
		ws = append(ws, workload{"StatefulSet", n, ptrValue(s.Spec.Replicas), s.Spec.Template})
	}
	slices.SortFunc(ws, func(a, b workload) int { return strings.Compare(a.name, b.name) })
	return ws
}

func ptrValue(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// decodeManifests decodes every document of a YAML stream strictly into its API type.
func decodeManifests(b []byte) ([]any, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []any
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, err
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1 Secret":
			obj = &corev1.Secret{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "v1 Namespace":
			obj = &corev1.Namespace{}
		case "apps/v1 Deployment":
			obj = &appsv1.Deployment{}
		case "apps/v1 StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "policy/v1 PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "networking.k8s.io/v1 NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		default:
			return nil, fmt.Errorf("a %s %s: not a kind this check knows", tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", tm.Kind, err)
		}
		objs = append(objs, obj)
	}
}

// renderOverlay runs kustomize on a copy of deploy/k8s in memory, with the secret files
// make-secrets.sh would write.
func renderOverlay(t *testing.T, overlay string) *cluster {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(k8sDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(k8sDir, path)
		if err != nil {
			return err
		}
		if strings.Contains(rel, "secrets"+string(filepath.Separator)) {
			return nil // a developer's own secrets stay out of the check
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/k8s", rel), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		policies: map[string]*networkingv1.NetworkPolicy{}, namespaces: map[string]*corev1.Namespace{},
	}
	worker, user := "w0rkert0ken"+strings.Repeat("a", 20), "us3rt0ken"+strings.Repeat("b", 20)
	files := map[string]string{
		"nats.token":   "n4tst0ken" + strings.Repeat("c", 20),
		"worker.token": worker + "\n",
		"user.token":   user + "\n",
		"auth.tokens":  worker + " worker workers\n" + user + " read,submit,data,predict user\n",
		"dsn":          "postgres://pgtrain:s3cretpassw0rd@db.example:5432/pgtrain?sslmode=verify-full",
	}
	for name, v := range files {
		if err := mem.WriteFile(filepath.Join("/k8s", overlay, "secrets", name), []byte(v)); err != nil {
			t.Fatal(err)
		}
		c.secretValues = append(c.secretValues, strings.TrimSpace(v))
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, filepath.Join("/k8s", overlay))
	if err != nil {
		t.Fatalf("kustomize cannot render %s: %v", overlay, err)
	}
	c.rendered, err = resources.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(c.rendered)
	if err != nil {
		t.Fatalf("the rendered %s: %v", overlay, err)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			c.configMaps[o.Name] = o
		case *corev1.Secret:
			c.secrets[o.Name] = o
		case *corev1.Service:
			c.services[o.Name] = o
		case *appsv1.Deployment:
			c.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			c.statefulSets[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			c.pdbs[o.Name] = o
		case *networkingv1.NetworkPolicy:
			c.policies[o.Name] = o
		case *corev1.Namespace:
			c.namespaces[o.Name] = o
		}
	}
	if len(c.namespaces) != 1 {
		t.Errorf("the overlay should create its namespace, has %d", len(c.namespaces))
	}
	return c
}

// secretKey returns the Secret's value under key (kustomize writes data base64-encoded; the
// API types decode it).
func (c *cluster) secretKey(name, key string) (string, bool) {
	s, ok := c.secrets[name]
	if !ok {
		return "", false
	}
	if v, ok := s.Data[key]; ok {
		return string(v), true
	}
	v, ok := s.StringData[key]
	return v, ok
}

// checkNATS: a 3-node JetStream cluster whose config the nats-server library accepts, with
// routes to every pod by its stable name, a PodDisruptionBudget that keeps a quorum, and a
// client Service.
func checkNATS(t *testing.T, c *cluster) {
	sts, ok := c.statefulSets["nats"]
	if !ok {
		t.Fatal("no nats StatefulSet")
	}
	replicas := ptrValue(sts.Spec.Replicas)
	if replicas != 3 {
		t.Errorf("nats runs %d replicas, want 3", replicas)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("nats needs a persistent volume per pod for JetStream, has %d claim templates", len(sts.Spec.VolumeClaimTemplates))
	}
	pod := sts.Spec.Template.Spec
	ctr := pod.Containers[0]
	if !strings.HasPrefix(ctr.Image, "nats:") {
		t.Errorf("nats image %q, want the official nats image", ctr.Image)
	}
	confPath := argAfter(ctr.Args, "--config")
	mount, vol := mountOf(pod, ctr, confPath)
	if vol == nil || vol.ConfigMap == nil {
		t.Fatalf("the nats config %q is not mounted from a ConfigMap", confPath)
	}
	cm, ok := c.configMaps[vol.ConfigMap.Name]
	if !ok {
		t.Fatalf("ConfigMap %s is not in the overlay", vol.ConfigMap.Name)
	}
	conf, ok := cm.Data[strings.TrimPrefix(confPath, mount.MountPath+"/")]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Name, confPath)
	}
	// The config's variables come from the container's environment.
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			t.Setenv(e.Name, sts.Name+"-0")
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			v, ok := c.secretKey(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			if !ok {
				t.Errorf("nats env %s: Secret %s has no key %s", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			t.Setenv(e.Name, v)
		default:
			t.Setenv(e.Name, e.Value)
		}
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server refuses the config: %v", err)
	}
	if !opts.JetStream || opts.StoreDir == "" {
		t.Errorf("JetStream is off or has no store dir: %v %q", opts.JetStream, opts.StoreDir)
	} else if m, _ := mountOf(pod, ctr, opts.StoreDir+"/x"); m.Name != sts.Spec.VolumeClaimTemplates[0].Name {
		t.Errorf("the JetStream store %s is not on the persistent volume", opts.StoreDir)
	}
	if opts.ServerName != sts.Name+"-0" {
		t.Errorf("server_name %q does not follow the pod's name", opts.ServerName)
	}
	if opts.Authorization == "" {
		t.Error("nats accepts clients without a token")
	}
	if len(opts.Routes) != int(replicas) {
		t.Errorf("%d routes for %d replicas", len(opts.Routes), replicas)
	}
	headless, ok := c.services[sts.Spec.ServiceName]
	if !ok || headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("the StatefulSet's service %q is not a headless Service", sts.Spec.ServiceName)
	}
	for i, r := range opts.Routes {
		if want := fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, opts.Cluster.Port); r.Host != want {
			t.Errorf("route %d is %s, want %s", i, r.Host, want)
		}
	}
	if !hasPort(ctr, int32(opts.Port)) || !hasPort(ctr, int32(opts.Cluster.Port)) || !hasPort(ctr, int32(opts.HTTPPort)) {
		t.Errorf("the nats container does not expose ports %d, %d and %d", opts.Port, opts.Cluster.Port, opts.HTTPPort)
	}
	for _, p := range []*corev1.Probe{ctr.ReadinessProbe, ctr.LivenessProbe, ctr.StartupProbe} {
		if p == nil || p.HTTPGet == nil || !strings.HasPrefix(p.HTTPGet.Path, "/healthz") || portNumber(ctr, p.HTTPGet.Port) != int32(opts.HTTPPort) {
			t.Errorf("nats probe %+v: want /healthz on the monitoring port %d", p, opts.HTTPPort)
		}
	}

	pdb, ok := c.pdbs["nats"]
	if !ok {
		t.Fatal("no PodDisruptionBudget for nats")
	}
	if !selects(t, pdb.Spec.Selector, sts.Spec.Template.Labels) {
		t.Error("the nats PodDisruptionBudget does not select the nats pods")
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("the nats PodDisruptionBudget must keep a quorum of R3 streams: maxUnavailable 1, has %v", pdb.Spec.MaxUnavailable)
	}
}

// roleRequired lists the flags each role cannot run without (on its command line or in
// its environment).
var roleRequired = map[string][]string{
	"coordinator":  {"dsn", "nats-url", "nats-token-file", "auth-token-file", "listen", "stream-replicas"},
	"fetcher":      {"dsn", "nats-url", "nats-token-file", "coordinator", "coordinator-token-file", "health-listen", "stream-replicas"},
	"preprocessor": {"nats-url", "nats-token-file", "coordinator", "coordinator-token-file", "health-listen", "stream-replicas"},
	"trainer":      {"nats-url", "nats-token-file", "coordinator", "coordinator-token-file", "health-listen", "out-dir", "stream-replicas"},
	"scorer":       {"dsn", "nats-url", "nats-token-file", "coordinator", "coordinator-token-file", "health-listen", "stream-replicas"},
}

// checkRoles checks every pgtrain container against the binary.
func checkRoles(t *testing.T, c *cluster) {
	cmds := map[string]command{}
	for _, cmd := range commands() {
		cmds[cmd.name] = cmd
	}
	natsReplicas := ptrValue(c.statefulSets["nats"].Spec.Replicas)
	seen := map[string]bool{}
	for _, w := range c.workloads() {
		pod := w.pod.Spec
		for _, ctr := range pod.Containers {
			if !strings.HasPrefix(ctr.Image, "pgtrain") {
				continue
			}
			where := fmt.Sprintf("%s %s, container %s", w.kind, w.name, ctr.Name)
			args := append(append([]string{}, ctr.Command...), ctr.Args...)
			if len(args) == 0 {
				t.Errorf("%s: no pgtrain command", where)
				continue
			}
			cmd, ok := cmds[args[0]]
			if !ok {
				t.Errorf("%s: %q is not a pgtrain command", where, args[0])
				continue
			}
			role := args[0]
			seen[role] = true
			fs := cmd.flags()
			fs.SetOutput(io.Discard)
			if err := fs.Parse(args[1:]); err != nil {
				t.Errorf("%s: pgtrain %s rejects its arguments %v: %v", where, role, args[1:], err)
				continue
			}
			values := map[string]string{}
			fs.Visit(func(f *flag.Flag) { values[f.Name] = f.Value.String() })
			for name, v := range containerEnv(t, c, where, ctr) {
				if !strings.HasPrefix(name, "PGTRAIN_") {
					continue
				}
				if !anyCommandHasEnv(name) {
					t.Errorf("%s: %s matches no flag of any pgtrain command", where, name)
				}
				if f := fs.Lookup(flagName(name)); f != nil {
					if err := f.Value.Set(v); err != nil {
						t.Errorf("%s: pgtrain %s rejects %s=%q: %v", where, role, name, v, err)
					}
					if _, onLine := values[f.Name]; !onLine {
						values[f.Name] = v
					}
				}
			}
			for _, f := range roleRequired[role] {
				if _, ok := values[f]; !ok {
					t.Errorf("%s: --%s is neither in its command line nor in its environment", where, f)
				}
			}
			if got := values["stream-replicas"]; got != strconv.Itoa(int(natsReplicas)) {
				t.Errorf("%s: --stream-replicas %s, but nats runs %d replicas", where, got, natsReplicas)
			}
			for _, f := range []string{"auth-token-file", "nats-token-file", "coordinator-token-file"} {
				if path, ok := values[f]; ok {
					checkSecretFile(t, c, where+", --"+f, pod, ctr, path)
				}
			}
			if dir, ok := values["out-dir"]; ok {
				if m, _ := mountOf(pod, ctr, dir+"/x"); m.Name == "" || m.ReadOnly {
					t.Errorf("%s: --out-dir %s is not on a writable volume", where, dir)
				}
			}
			checkServiceURL(t, c, where+", --nats-url", values["nats-url"], "nats", c.statefulSets["nats"].Spec.Template)
			if role != "coordinator" {
				checkServiceURL(t, c, where+", --coordinator", values["coordinator"], "http", c.deployments["coordinator"].Spec.Template)
			}
			listen := values["health-listen"]
			if role == "coordinator" {
				listen = values["listen"]
			}
			checkProbes(t, where, role, ctr, listen)
			checkResources(t, where, ctr)
			if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("%s: the pod may run as root", where)
			}
			if role == "trainer" {
				// Stable trainer ids: a StatefulSet's hostname, not a fixed --id shared by replicas.
				if w.kind != "StatefulSet" {
					t.Errorf("%s: trainers need stable ids; run them as a StatefulSet", where)
				}
				if _, ok := values["id"]; ok {
					t.Errorf("%s: a fixed --id makes every replica the same trainer", where)
				}
			}
			if role == "coordinator" && w.replicas != 1 {
				t.Errorf("%s: %d coordinators; run one (its state is in the KV bucket)", where, w.replicas)
			}
		}
	}
	for role := range roleRequired {
		if !seen[role] {
			t.Errorf("no workload runs pgtrain %s", role)
		}
	}
	for _, v := range c.secretValues {
		for _, cm := range c.configMaps {
			for k, data := range cm.Data {
				if strings.Contains(data, v) {
					t.Errorf("ConfigMap %s key %s holds a secret", cm.Name, k)
				}
			}
		}
	}
}

// containerEnv resolves a container's environment: envFrom ConfigMaps, then env, whose
// values from Secrets must exist.
func containerEnv(t *testing.T, c *cluster, where string, ctr corev1.Container) map[string]string {
	env := map[string]string{}
	for _, from := range ctr.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("%s: envFrom other than a ConfigMap", where)
			continue
		}
		cm, ok := c.configMaps[from.ConfigMapRef.Name]
		if !ok {
			t.Errorf("%s: envFrom ConfigMap %s is not in the overlay", where, from.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			v, ok := c.secretKey(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			if !ok {
				t.Errorf("%s: %s: Secret %s has no key %s", where, e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			env[e.Name] = v
		default:
			t.Errorf("%s: %s comes from neither a value nor a Secret", where, e.Name)
		}
	}
	return env
}

// checkSecretFile: path is a file of a Secret mounted read-only into the container.
func checkSecretFile(t *testing.T, c *cluster, where string, pod corev1.PodSpec, ctr corev1.Container, path string) {
	m, vol := mountOf(pod, ctr, path)
	if vol == nil || vol.Secret == nil {
		t.Errorf("%s: %s is not on a Secret volume", where, path)
		return
	}
	if !m.ReadOnly {
		t.Errorf("%s: the Secret volume %s is mounted writable", where, m.Name)
	}
	if _, ok := c.secretKey(vol.Secret.SecretName, strings.TrimPrefix(path, m.MountPath+"/")); !ok {
		t.Errorf("%s: Secret %s has no file %s", where, vol.Secret.SecretName, filepath.Base(path))
	}
}

// checkServiceURL: url names a Service of the overlay on one of its ports, and the Service
// sends it to the pods of target on the container port of that name.
func checkServiceURL(t *testing.T, c *cluster, where, url, portName string, target corev1.PodTemplateSpec) {
	host, port, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(url, "nats://"), "http://"))
	if err != nil {
		t.Errorf("%s: %q: %v", where, url, err)
		return
	}
	svc, ok := c.services[host]
	if !ok {
		t.Errorf("%s: no Service %q", where, host)
		return
	}
	if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, target.Labels) {
		t.Errorf("%s: Service %s does not select the pods it should", where, host)
	}
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			if p.TargetPort.String() != portName && p.TargetPort.IntValue() != int(p.Port) {
				t.Errorf("%s: Service %s port %s goes to %s, want the container port %s", where, host, port, p.TargetPort.String(), portName)
			}
			return
		}
	}
	t.Errorf("%s: Service %s has no port %s", where, host, port)
}

// checkProbes: readiness and liveness are HTTP GETs on the port the role listens on, at
// paths the role serves without a token.
func checkProbes(t *testing.T, where, role string, ctr corev1.Container, listen string) {
	_, listenPort, err := net.SplitHostPort(listen)
	if err != nil {
		t.Errorf("%s: listen address %q: %v", where, listen, err)
		return
	}
	for name, p := range map[string]*corev1.Probe{"readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", where, name)
			continue
		}
		if got := portNumber(ctr, p.HTTPGet.Port); strconv.Itoa(int(got)) != listenPort {
			t.Errorf("%s: %s probe on port %d, the role listens on %s", where, name, got, listenPort)
		}
		if role == "coordinator" {
			if !coordinatorServesOpenly(t, p.HTTPGet.Path) {
				t.Errorf("%s: %s probe path %s is not a route the coordinator serves without a token", where, name, p.HTTPGet.Path)
			}
		} else if status := workerProbeStatus(t, p.HTTPGet.Path); status != http.StatusOK {
			t.Errorf("%s: %s probe path %s answers %d on a worker's health listener", where, name, p.HTTPGet.Path, status)
		}
	}
}

// coordinatorServesOpenly looks the path up in the OpenAPI document, which a coordinator
// test keeps equal to the route table, scopes included.
func coordinatorServesOpenly(t *testing.T, path string) bool {
	b, err := os.ReadFile("../../coordinator/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]struct {
			Get *struct {
				Security []any `json:"security"`
			} `json:"get"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	op := doc.Paths[path].Get
	return op != nil && op.Security != nil && len(op.Security) == 0
}

// workerProbeStatus asks a real worker health listener (every worker role serves the same
// one) for path.
func workerProbeStatus(t *testing.T, path string) int {
	srv, err := health.Start("127.0.0.1:0", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(t.Context())
	resp, err := http.Get("http://" + srv.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkResources: sized from the measured RSS, every container asks for CPU and memory
// and is bounded in memory.
func checkResources(t *testing.T, where string, ctr corev1.Container) {
	r := ctr.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("%s: needs CPU and memory requests and a memory limit, has %+v", where, r)
		return
	}
	if r.Limits.Memory().Cmp(*r.Requests.Memory()) < 0 {
		t.Errorf("%s: memory limit below its request", where)
	}
}

// checkNetworkPolicies: NATS and the coordinator take connections from the roles that
// need them and from nothing else the policies name.
func checkNetworkPolicies(t *testing.T, c *cluster) {
	admits := func(policy *networkingv1.NetworkPolicy, port int, pod map[string]string) bool {
		for _, rule := range policy.Spec.Ingress {
			portOK := len(rule.Ports) == 0
			for _, p := range rule.Ports {
				portOK = portOK || p.Port != nil && p.Port.IntValue() == port
			}
			for _, from := range rule.From {
				if portOK && from.NamespaceSelector == nil && from.PodSelector != nil && selects(t, from.PodSelector, pod) {
					return true
				}
			}
		}
		return false
	}
	guarded := func(target map[string]string) *networkingv1.NetworkPolicy {
		for _, p := range c.policies {
			if selects(t, &p.Spec.PodSelector, target) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				return p
			}
		}
		return nil
	}
	natsPods := c.statefulSets["nats"].Spec.Template.Labels
	coordPods := c.deployments["coordinator"].Spec.Template.Labels
	natsPolicy, coordPolicy := guarded(natsPods), guarded(coordPods)
	if natsPolicy == nil || coordPolicy == nil {
		t.Fatalf("NATS and the coordinator need NetworkPolicies (nats: %v, coordinator: %v)", natsPolicy != nil, coordPolicy != nil)
	}
	if !admits(natsPolicy, 6222, natsPods) {
		t.Error("the NATS pods cannot reach each other's cluster port")
	}
	for _, w := range c.workloads() {
		if w.name == "nats" {
			continue
		}
		if !admits(natsPolicy, 4222, w.pod.Labels) {
			t.Errorf("%s %s cannot reach NATS", w.kind, w.name)
		}
		if w.name != "coordinator" && !admits(coordPolicy, 8080, w.pod.Labels) {
			t.Errorf("%s %s cannot reach the coordinator", w.kind, w.name)
		}
		if guarded(w.pod.Labels) == nil {
			t.Errorf("%s %s takes connections from anywhere: no NetworkPolicy selects it", w.kind, w.name)
		}
	}
	if admits(natsPolicy, 4222, map[string]string{"app.kubernetes.io/name": "something-else"}) {
		t.Error("NATS admits any pod")
	}
	if admits(coordPolicy, 8080, map[string]string{"app.kubernetes.io/name": "something-else"}) {
		t.Error("the coordinator admits any pod")
	}
}

func selects(t *testing.T, sel *metav1.LabelSelector, lbls map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("selector %v: %v", sel, err)
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(lbls))
}

// mountOf finds the mount that holds path in the container, and its pod volume (nil for a
// volume claim template's).
func mountOf(pod corev1.PodSpec, ctr corev1.Container, path string) (corev1.VolumeMount, *corev1.Volume) {
	var best corev1.VolumeMount
	for _, m := range ctr.VolumeMounts {
		if strings.HasPrefix(path, m.MountPath+"/") && len(m.MountPath) > len(best.MountPath) {
			best = m
		}
	}
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == best.Name {
			return best, &pod.Volumes[i]
		}
	}
	return best, nil
}

func argAfter(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func hasPort(ctr corev1.Container, port int32) bool {
	for _, p := range ctr.Ports {
		if p.ContainerPort == port {
			return true
		}
	}
	return false
}

// portNumber resolves a probe's port, by number or by the container port's name.
func portNumber(ctr corev1.Container, p intstr.IntOrString) int32 {
	if p.IntValue() != 0 {
		return int32(p.IntValue())
	}
	for _, cp := range ctr.Ports {
		if cp.Name == p.String() {
			return cp.ContainerPort
		}
	}
	return 0
}
