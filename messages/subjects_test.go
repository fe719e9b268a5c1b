package messages

import (
	"errors"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	tests := []struct {
		name    string
		prefix  string
		want    [5]string // raw stream, ready stream, bucket, raw subjects, ready subjects
		wantErr bool
	}{
		{name: "default", prefix: "", want: [5]string{"PGTRAIN_RAW", "PGTRAIN_READY", "pgtrain_state", "pgtrain.raw.>", "pgtrain.ready.>"}},
		{name: "default spelled out", prefix: "PGTRAIN", want: [5]string{"PGTRAIN_RAW", "PGTRAIN_READY", "pgtrain_state", "pgtrain.raw.>", "pgtrain.ready.>"}},
		{name: "case-insensitive", prefix: "Team-b_2", want: [5]string{"TEAM-B_2_RAW", "TEAM-B_2_READY", "team-b_2_state", "team-b_2.raw.>", "team-b_2.ready.>"}},
		{name: "dot", prefix: "a.b", wantErr: true},
		{name: "wildcard", prefix: "a*", wantErr: true},
		{name: "tail wildcard", prefix: ">", wantErr: true},
		{name: "space", prefix: "a b", wantErr: true},
		{name: "path separator", prefix: "a/b", wantErr: true},
		{name: "non-ASCII", prefix: "prä", wantErr: true},
		{name: "too long", prefix: "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewNames(tt.prefix)
			if tt.wantErr {
				if !errors.Is(err, ErrBadPrefix) {
					t.Fatalf("NewNames(%q): err = %v, want ErrBadPrefix", tt.prefix, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := [5]string{n.RawStream(), n.ReadyStream(), n.StateBucket(), n.RawSubjects(), n.ReadySubjects()}
			if got != tt.want {
				t.Fatalf("names %v, want %v", got, tt.want)
			}
		})
	}
	// The zero value is the default deployment.
	d, _ := NewNames(DefaultPrefix)
	if (Names{}).ReadySubject(BatchID{JobID: "j"}) != d.ReadySubject(BatchID{JobID: "j"}) {
		t.Fatal("the zero Names differ from the default prefix")
	}
}

func TestParseRawSubject(t *testing.T) {
	other, err := NewNames("other")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		names   Names
		subject string
		want    BatchID
		wantErr bool
	}{
		{name: "page", subject: "pgtrain.raw.job-1.0.2.3", want: BatchID{JobID: "job-1", Range: 2, Page: 3}},
		{name: "large numbers", subject: "pgtrain.raw.j_2.7.12345.678901", want: BatchID{JobID: "j_2", Pass: 7, Range: 12345, Page: 678901}},
		{name: "other prefix", names: other, subject: "other.raw.j.1.2.3", want: BatchID{JobID: "j", Pass: 1, Range: 2, Page: 3}},
		{name: "missing page", subject: "pgtrain.raw.job-1.0.2", wantErr: true},
		{name: "extra token", subject: "pgtrain.raw.job-1.0.2.3.4", wantErr: true},
		{name: "ready subject", subject: "pgtrain.ready.job-1.0.2.3", wantErr: true},
		{name: "upper-case job", subject: "pgtrain.raw.JOB.0.2.3", wantErr: true},
		{name: "empty job", subject: "pgtrain.raw..0.2.3", wantErr: true},
		{name: "another deployment", subject: "other.raw.j.1.2.3", wantErr: true},
		{name: "default under another prefix", names: other, subject: "pgtrain.raw.j.1.2.3", wantErr: true},
		{name: "negative", subject: "pgtrain.raw.j.-1.2.3", wantErr: true},
		{name: "sign", subject: "pgtrain.raw.j.+1.2.3", wantErr: true},
		{name: "leading zero", subject: "pgtrain.raw.j.01.2.3", wantErr: true},
		{name: "not a number", subject: "pgtrain.raw.j.0.x.3", wantErr: true},
		{name: "overflow", subject: "pgtrain.raw.j.0.2.99999999999999999999", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.names.ParseRawSubject(tt.subject)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseRawSubject(%q) = %+v, %v; want error %v", tt.subject, got, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("ParseRawSubject(%q) = %+v, want %+v", tt.subject, got, tt.want)
			}
			if err == nil && tt.names.RawSubject(got) != tt.subject {
				t.Fatalf("RawSubject(%+v) = %q, want %q back", got, tt.names.RawSubject(got), tt.subject)
			}
		})
	}
}

// FuzzParseRawSubject: whatever the subject, parsing never panics, and a subject it accepts
// is exactly the one RawSubject builds for the batch it returns.
func FuzzParseRawSubject(f *testing.F) {
	for _, s := range []string{"pgtrain.raw.job-1.0.2.3", "pgtrain.raw.j.01.2.3", "pgtrain.ready.j.0.0.0", "pgtrain.raw.j.0.0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		var n Names
		id, err := n.ParseRawSubject(subject)
		if err != nil {
			return
		}
		if got := n.RawSubject(id); got != subject {
			t.Fatalf("parsed %q as %+v, which builds %q", subject, id, got)
		}
	})
}

// A prediction job's pages have their own stream and subjects, apart from the
// preprocessors', and parse back as RAW subjects do.
func TestScoreSubject(t *testing.T) {
	var n Names
	b := BatchID{JobID: "job-1", Range: 2, Page: 3}
	if got := n.PageSubject(JobKindPrediction, b); got != "pgtrain.score.job-1.0.2.3" || got != n.ScoreSubject(b) {
		t.Fatalf("prediction page subject %q", got)
	}
	if n.PageStream(JobKindPrediction) != "PGTRAIN_SCORE" || n.PageStream(JobKindTraining) != n.RawStream() {
		t.Fatalf("page streams %q and %q", n.PageStream(JobKindPrediction), n.PageStream(JobKindTraining))
	}
	if got := n.PageSubject(JobKindTraining, b); got != n.RawSubject(b) {
		t.Fatalf("training page subject %q, want %q", got, n.RawSubject(b))
	}
	if got, err := n.ParseScoreSubject(n.ScoreSubject(b)); err != nil || got != b {
		t.Fatalf("ParseScoreSubject = %+v, %v; want %+v", got, err, b)
	}
	if _, err := n.ParseScoreSubject(n.RawSubject(b)); err == nil {
		t.Fatal("a training page's subject parsed as a prediction page's")
	}
	if _, err := n.ParseRawSubject(n.ScoreSubject(b)); err == nil {
		t.Fatal("a prediction page's subject parsed as a training page's")
	}
	if !strings.HasPrefix(n.ScoreJobSubjects("job-1"), "pgtrain.score.job-1.") || strings.HasPrefix(n.ScoreSubjects(), strings.TrimSuffix(n.RawSubjects(), ">")) {
		t.Fatalf("score subjects %q, %q overlap the raw ones %q", n.ScoreSubjects(), n.ScoreJobSubjects("job-1"), n.RawSubjects())
	}
}
