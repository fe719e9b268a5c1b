package main

import (
	"bufio"
	"flag"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"pgtrain/coordinator"
	"pgtrain/internal/local"
)

// imageTools are the programs a healthcheck may run in the images the compose file uses
// besides pgtrain's: the default nats image is built from scratch and has none.
var imageTools = []struct {
	image *regexp.Regexp
	tools []string
}{
	{regexp.MustCompile(`^postgres:`), []string{"pg_isready"}},
	{regexp.MustCompile(`^nats:[^:]*-alpine$`), []string{"wget"}},
	{regexp.MustCompile(`^nats:`), nil},
}

// What compose would need to bring the cluster up healthy and keep it so: every service
// has a healthcheck that runs a program its image has, against the port it serves; every
// dependency waits for health; volumes are writable by the image's user; replicas of a
// role do not share an id; the user token can do what `pgtrain up`'s can.
func TestComposeFileWouldStartHealthy(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "compose")
	project := loadCompose(t, dir)
	cmds := map[string]command{}
	for _, c := range commands() {
		cmds[c.name] = c
	}
	dockerfile, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	uid, writable := imageUserDirs(t, string(dockerfile))

	for name, svc := range project.Services {
		tool := len(svc.Entrypoint) > 0 // submit, predict: run once, serve nothing
		if svc.Image != "pgtrain:latest" {
			checkOtherHealthcheck(t, name, svc)
			continue
		}
		args := []string(svc.Command)
		if tool {
			args = append(append([]string{}, svc.Entrypoint[1:]...), args...)
		}
		if len(args) == 0 {
			t.Errorf("service %s: no pgtrain command", name)
			continue
		}
		cmd, ok := cmds[args[0]]
		if !ok {
			t.Errorf("service %s: %q is not a pgtrain command", name, args[0])
			continue
		}
		fs := cmd.flags()
		fs.SetOutput(new(strings.Builder))
		if err := fs.Parse(args[1:]); err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for env, v := range svc.Environment {
			if f := flagName(env); strings.HasPrefix(env, "PGTRAIN_") && fs.Lookup(f) != nil && !given[f] && v != nil {
				if err := fs.Set(f, *v); err != nil {
					t.Errorf("service %s: $%s: %v", name, env, err)
				}
				given[f] = true
			}
		}

		// A fixed id makes every replica of `--scale` the same worker: two trainers would
		// train one job. Each role defaults to an id of its own host.
		if fs.Lookup("id") != nil && given["id"] {
			t.Errorf("service %s: --id %s is fixed; replicas need their own (leave it to the default)", name, fs.Lookup("id").Value)
		}

		for dep, d := range svc.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				t.Errorf("service %s: depends on %s with condition %q, want %s", name, dep, d.Condition, types.ServiceConditionHealthy)
			}
			if hc := project.Services[dep].HealthCheck; hc == nil || hc.Disable {
				t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
		if fs.Lookup("nats-url") != nil && args[0] != "nats" && !tool {
			if _, ok := svc.DependsOn["nats"]; !ok {
				t.Errorf("service %s uses NATS but does not wait for it", name)
			}
		}

		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeVolume && !v.ReadOnly && !underAny(v.Target, writable) {
				t.Errorf("service %s: volume %s at %s: the image's user %s cannot write there (the Dockerfile chowns only %v)", name, v.Source, v.Target, uid, writable)
			}
		}
		if f := fs.Lookup("out-dir"); f != nil {
			if !slices.ContainsFunc(svc.Volumes, func(v types.ServiceVolumeConfig) bool {
				return v.Type == types.VolumeTypeVolume && !v.ReadOnly && underAny(f.Value.String(), []string{v.Target})
			}) {
				t.Errorf("service %s: --out-dir %s is not on a writable volume: models would die with the container", name, f.Value)
			}
		}

		if tool {
			continue
		}
		listen := "health-listen"
		if args[0] == "coordinator" {
			listen = "listen"
		}
		checkProbe(t, name, svc.HealthCheck, fs.Lookup(listen))
	}

	checkUserScopes(t, dir)
}

// checkOtherHealthcheck: postgres and nats, each with a program its image has.
func checkOtherHealthcheck(t *testing.T, name string, svc types.ServiceConfig) {
	t.Helper()
	hc := svc.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		t.Errorf("service %s: want a healthcheck [CMD program args...], have %+v", name, hc)
		return
	}
	for _, it := range imageTools {
		if it.image.MatchString(svc.Image) {
			if !slices.Contains(it.tools, hc.Test[1]) {
				t.Errorf("service %s: the healthcheck runs %s, which image %s does not have (it has %v)", name, hc.Test[1], svc.Image, it.tools)
			}
			return
		}
	}
	t.Errorf("service %s: image %s: which programs it has is unknown to this test", name, svc.Image)
}

// checkProbe: the healthcheck is `pgtrain probe` on this container's probe port.
func checkProbe(t *testing.T, name string, hc *types.HealthCheckConfig, listen *flag.Flag) {
	t.Helper()
	if hc == nil || hc.Disable || len(hc.Test) < 3 || hc.Test[0] != "CMD" || hc.Test[1] != "pgtrain" || hc.Test[2] != "probe" {
		t.Errorf("service %s: want a healthcheck [CMD pgtrain probe URL] (the image has no curl or wget), have %+v", name, hc)
		return
	}
	fs, _ := probeFlags()
	fs.SetOutput(new(strings.Builder))
	if err := fs.Parse(hc.Test[3:]); err != nil || fs.NArg() != 1 {
		t.Errorf("service %s: pgtrain probe rejects %v: %v", name, hc.Test[3:], err)
		return
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil {
		t.Errorf("service %s: probe URL: %v", name, err)
		return
	}
	if u.Path != "/readyz" && u.Path != "/healthz" {
		t.Errorf("service %s: probe path %s, want /readyz or /healthz", name, u.Path)
	}
	if listen == nil || listen.Value.String() == "" {
		t.Errorf("service %s: probes %s but serves no probes (set its listen address)", name, u)
		return
	}
	_, port, err := net.SplitHostPort(listen.Value.String())
	if err != nil {
		t.Errorf("service %s: --%s %s: %v", name, listen.Name, listen.Value, err)
		return
	}
	if h := u.Hostname(); (h != "127.0.0.1" && h != "localhost") || u.Port() != port {
		t.Errorf("service %s: probes %s, but serves its probes on --%s %s", name, u.Host, listen.Name, listen.Value)
	}
}

// imageUserDirs reads the final stage of the Dockerfile: its USER's uid and the
// directories a RUN chowns to it.
func imageUserDirs(t *testing.T, dockerfile string) (uid string, dirs []string) {
	t.Helper()
	stages := strings.Split(dockerfile, "\nFROM ")
	last := stages[len(stages)-1]
	sc := bufio.NewScanner(strings.NewReader(last))
	var runs []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if u, ok := strings.CutPrefix(line, "USER "); ok {
			uid, _, _ = strings.Cut(u, ":")
		}
		if r, ok := strings.CutPrefix(line, "RUN "); ok {
			runs = append(runs, r)
		}
	}
	if uid == "" || uid == "0" || uid == "root" {
		t.Fatalf("the image should run as an unprivileged USER, has %q", uid)
	}
	for _, r := range runs {
		for _, step := range strings.Split(r, "&&") {
			f := strings.Fields(step)
			if len(f) >= 3 && f[0] == "chown" && strings.Split(f[1], ":")[0] == uid {
				dirs = append(dirs, f[2:]...)
			}
		}
	}
	return uid, dirs
}

func underAny(p string, dirs []string) bool {
	p = path.Clean(p)
	return slices.ContainsFunc(dirs, func(d string) bool {
		d = path.Clean(d)
		return p == d || strings.HasPrefix(p, d+"/")
	})
}

// checkUserScopes runs the secrets script in a scratch copy and reads the tokens it wrote
// as the coordinator would: the user's scopes are those of `pgtrain up`'s user token.
func checkUserScopes(t *testing.T, dir string) {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(dir, "make-secrets.sh"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "make-secrets.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", filepath.Join(tmp, "make-secrets.sh")).CombinedOutput(); err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	tokens, err := coordinator.LoadTokens(filepath.Join(tmp, "secrets", "auth.tokens"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tok := range tokens {
		names = append(names, tok.Name)
		switch tok.Name {
		case "user":
			if !sameScopes(tok.Scopes, local.UserScopes) {
				t.Errorf("the compose user token has scopes %v, pgtrain up's has %v", tok.Scopes, local.UserScopes)
			}
		case "workers":
			if !sameScopes(tok.Scopes, []coordinator.Scope{coordinator.ScopeWorker}) {
				t.Errorf("the compose worker token has scopes %v, want only worker", tok.Scopes)
			}
		}
	}
	if !slices.Contains(names, "user") || !slices.Contains(names, "workers") {
		t.Errorf("make-secrets.sh wrote tokens %v, want user and workers", names)
	}
}

func sameScopes(a, b []coordinator.Scope) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
