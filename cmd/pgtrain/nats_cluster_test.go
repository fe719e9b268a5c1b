package main

import (
	"io"
	"strings"
	"testing"
)

func TestNATSClusterFlags(t *testing.T) {
	full := []string{"--server-name", "nats-0", "--cluster-name", "pgtrain", "--cluster-listen", "0.0.0.0:6222",
		"--routes", "nats-route://nats-0.nats:6222,nats-route://nats-1.nats:6222, nats-route://nats-2.nats:6222"}
	with := func(flag, v string) []string {
		out := append([]string(nil), full...)
		for i := 0; i < len(out); i += 2 {
			if out[i] == flag {
				out[i+1] = v
			}
		}
		return out
	}
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string // names the flag
		routes  int
	}{
		{name: "a single server", args: nil},
		{name: "a cluster node", args: full, routes: 3},
		{name: "no routes", args: full[:6], wantErr: "--routes"},
		{name: "only a server name", args: []string{"--server-name", "n1"}, wantErr: "--cluster-name"},
		{name: "space in the name", args: with("--server-name", "nats 0"), wantErr: "--server-name"},
		{name: "bad cluster name", args: with("--cluster-name", "-x"), wantErr: "--cluster-name"},
		{name: "no port", args: with("--cluster-listen", "0.0.0.0"), wantErr: "--cluster-listen"},
		{name: "port out of range", args: with("--cluster-listen", "0.0.0.0:70000"), wantErr: "--cluster-listen"},
		{name: "route of another scheme", args: with("--routes", "http://nats-0:6222"), wantErr: "--routes"},
		{name: "route without a port", args: with("--routes", "nats-route://nats-0"), wantErr: "--routes"},
		{name: "route with a user", args: with("--routes", "nats-route://u:p@nats-0:6222"), wantErr: "--routes"},
		{name: "too many routes", args: with("--routes", strings.Repeat("nats-route://n:1,", maxRoutes)+"nats-route://n:1"), wantErr: "--routes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs, o := natsServerFlags()
			fs.SetOutput(io.Discard)
			if err := parseNoArgs(fs, tt.args); err != nil {
				t.Fatal(err)
			}
			c, err := o.cluster.options()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || exitCode(err) != 2 {
					t.Fatalf("err = %v, want a usage error naming %s", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), ":p@") {
					t.Errorf("the error repeats a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Routes) != tt.routes {
				t.Errorf("%d routes, want %d", len(c.Routes), tt.routes)
			}
			if tt.routes > 0 && (c.ServerName != "nats-0" || c.Name != "pgtrain" || c.Host != "0.0.0.0" || c.Port != 6222) {
				t.Errorf("cluster options %+v", c)
			}
		})
	}
}
