package faultpoint

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestArm(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    string
		wantErr string
	}{
		{name: "empty disarms", spec: "", want: ""},
		{name: "one point", spec: "fetcher.after_publish:3", want: "fetcher.after_publish:3"},
		{name: "two points, sorted", spec: " preprocessor.after_raw_ack:2 , fetcher.after_publish:1", want: "fetcher.after_publish:1,preprocessor.after_raw_ack:2"},
		{name: "no count", spec: "fetcher.after_publish", wantErr: "want name:N"},
		{name: "zero count", spec: "fetcher.after_publish:0", wantErr: "positive integer"},
		{name: "unknown point", spec: "fetcher.after_lunch:1", wantErr: "unknown point"},
		{name: "twice", spec: "fetcher.after_publish:1,fetcher.after_publish:2", wantErr: "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Arm(tt.spec)
			t.Cleanup(func() { armed = nil })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Arm(%q) error %v, want one containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Arm(%q) = %q, %v; want %q", tt.spec, got, err, tt.want)
			}
		})
	}
}

// The point fires on exactly the armed pass, once, and other points never fire.
func TestHitFiresOnTheNthPass(t *testing.T) {
	var fired []int64
	old := kill
	kill = func(name string, n int64) {
		if name != FetcherAfterPublish {
			t.Errorf("point %s fired", name)
		}
		fired = append(fired, n)
	}
	t.Cleanup(func() { kill, armed = old, nil })
	if _, err := Arm("fetcher.after_publish:3"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		Hit(FetcherAfterPublish)
		Hit(PreprocessorAfterRawAck)
		if want := min(max(i-2, 0), 1); len(fired) != want {
			t.Fatalf("after %d passes the point fired %d times, want %d", i, len(fired), want)
		}
	}
	if fired[0] != 3 {
		t.Fatalf("fired on pass %d, want 3", fired[0])
	}
}

func TestHitUnarmedDoesNothing(t *testing.T) {
	armed = nil
	for range 10 {
		Hit(FetcherAfterPublish)
	}
}

// A real process armed through the environment dies of SIGKILL at the armed pass and not
// before: the test re-runs itself as that process.
func TestArmedProcessKillsItself(t *testing.T) {
	if os.Getenv("FAULTPOINT_CHILD") == "1" {
		if _, err := Arm(os.Getenv(EnvVar)); err != nil {
			os.Exit(3)
		}
		for i := 1; i <= 2; i++ {
			Hit(TrainerAfterCheckpoint)
			os.Stdout.WriteString("passed\n")
		}
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestArmedProcessKillsItself$")
	cmd.Env = append(os.Environ(), "FAULTPOINT_CHILD=1", EnvVar+"="+TrainerAfterCheckpoint+":2")
	out, err := cmd.Output()
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("the child ended with %v, want a kill; output %q", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child ended with %v, want SIGKILL", ws)
	}
	if got := strings.Count(string(out), "passed"); got != 1 {
		t.Fatalf("the child passed the point %d times before dying, want 1", got)
	}
	if !strings.Contains(string(ee.Stderr), "trainer.after_checkpoint reached 2 times") {
		t.Fatalf("stderr %q does not say which point fired", ee.Stderr)
	}
}
