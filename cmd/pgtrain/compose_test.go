package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"pgtrain/internal/demo"
)

// No Docker engine runs in CI, so the compose file is checked the way compose itself would
// read it: services, images, replicas, dependencies, and every pgtrain command line and
// PGTRAIN_* variable against the binary's real flags.
func TestComposeFileMatchesTheBinary(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "compose")
	project := loadCompose(t, dir)
	cmds := map[string]command{}
	for _, c := range commands() {
		cmds[c.name] = c
	}
	required := map[string][]string{
		"coordinator":  {"dsn", "nats-url", "auth-token-file"},
		"fetcher":      {"dsn", "nats-url", "coordinator", "coordinator-token-file"},
		"preprocessor": {"nats-url", "coordinator", "coordinator-token-file"},
		"trainer":      {"nats-url", "coordinator", "coordinator-token-file"},
		"submit":       {"coordinator", "coordinator-token-file"},
		"scorer":       {"dsn", "nats-url", "coordinator", "coordinator-token-file"},
		"predict":      {"coordinator", "coordinator-token-file"},
	}
	wantReplicas := map[string]int{"fetcher": 3, "preprocessor": 2, "scorer": 2}
	roles := map[string]bool{}

	for name, svc := range project.Services {
		args := []string(svc.Command)
		if len(svc.Entrypoint) > 0 {
			if svc.Entrypoint[0] != "pgtrain" {
				t.Errorf("service %s: entrypoint %v, want pgtrain", name, svc.Entrypoint)
				continue
			}
			args = append(append([]string{}, svc.Entrypoint[1:]...), args...)
		} else if svc.Image != "pgtrain:latest" {
			continue // postgres, nats
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
		roles[args[0]] = true
		fs := cmd.flags()
		fs.SetOutput(new(strings.Builder))
		if err := fs.Parse(args[1:]); err != nil {
			t.Errorf("service %s: pgtrain %s rejects its arguments %v: %v", name, args[0], args[1:], err)
		}
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for env := range svc.Environment {
			if !strings.HasPrefix(env, "PGTRAIN_") || env == "PGTRAIN_PG_PASSWORD" {
				continue
			}
			if !anyCommandHasEnv(env) {
				t.Errorf("service %s: %s matches no flag of any pgtrain command", name, env)
			}
			if fs.Lookup(flagName(env)) != nil {
				given[flagName(env)] = true
			}
		}
		for _, f := range required[args[0]] {
			if !given[f] {
				t.Errorf("service %s (pgtrain %s): --%s is neither in its command nor in its environment", name, args[0], f)
			}
		}
		if want, ok := wantReplicas[args[0]]; ok {
			if svc.Deploy == nil || svc.Deploy.Replicas == nil || *svc.Deploy.Replicas != want {
				t.Errorf("service %s: want %d replicas", name, want)
			}
		}
		if args[0] != "coordinator" {
			if _, ok := svc.DependsOn["coordinator"]; !ok {
				t.Errorf("service %s does not depend on the coordinator", name)
			}
		}
	}
	for _, r := range []string{"coordinator", "fetcher", "preprocessor", "trainer", "scorer", "submit", "predict"} {
		if !roles[r] {
			t.Errorf("no service runs pgtrain %s", r)
		}
	}

	coord := project.Services["coordinator"]
	if coord.DependsOn["postgres"].Condition != types.ServiceConditionHealthy {
		t.Errorf("the coordinator should wait for a healthy postgres, has %+v", coord.DependsOn)
	}
	if _, ok := coord.DependsOn["nats"]; !ok {
		t.Error("the coordinator does not depend on nats")
	}
	if coord.Build == nil {
		t.Fatal("the coordinator service does not build the image")
	}
	dockerfile, err := os.ReadFile(filepath.Join(coord.Build.Context, coord.Build.Dockerfile))
	if err != nil {
		t.Fatalf("the Dockerfile the compose file names: %v", err)
	}
	for _, want := range []string{"./cmd/pgtrain", `ENTRYPOINT ["pgtrain"]`, "ARG TENSORFLOW"} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}

	nats := project.Services["nats"]
	if !strings.Contains(strings.Join(nats.Command, " "), "--jetstream") || len(nats.Volumes) == 0 {
		t.Errorf("nats must run with JetStream on a volume: command %v, volumes %v", nats.Command, nats.Volumes)
	}
	if !strings.HasPrefix(project.Services["postgres"].Image, "postgres:") {
		t.Errorf("postgres image %q", project.Services["postgres"].Image)
	}

	// The spec the compose README submits is the demo's.
	spec, err := os.ReadFile(filepath.Join(dir, "specs", "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal(spec, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(demo.Spec(5), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("deploy/compose/specs/demo.json differs from the demo spec; regenerate it")
	}
}

// loadCompose reads the compose file as compose would, the tools profile included.
func loadCompose(t *testing.T, dir string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithWorkingDirectory(dir), cli.WithProfiles([]string{"tools"}), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose cannot load the file: %v", err)
	}
	return project
}

func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "PGTRAIN_")), "_", "-")
}

func anyCommandHasEnv(env string) bool {
	for _, c := range commands() {
		if c.flags().Lookup(flagName(env)) != nil {
			return true
		}
	}
	return false
}
