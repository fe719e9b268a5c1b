package coordinator

import (
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "defaults", cfg: Config{}},
		{name: "tiny lease", cfg: Config{LeaseTTL: time.Millisecond}, wantErr: true},
		{name: "negative window", cfg: Config{Window: -1}, wantErr: true},
		{name: "tiny payload", cfg: Config{MaxPayload: 100}, wantErr: true},
		{name: "explicit payload", cfg: Config{MaxPayload: 8 << 20}},
		{name: "negative ready bytes", cfg: Config{ReadyMaxBytes: -1}, wantErr: true},
		{name: "negative plan conns", cfg: Config{PlanConns: -1}, wantErr: true},
		{name: "too many plan conns", cfg: Config{PlanConns: MaxPlanConns + 1}, wantErr: true},
		{name: "planning on its own connection", cfg: Config{PlanConns: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
	d := Config{}.WithDefaults()
	if d.Listen != DefaultListen || d.LeaseTTL != DefaultLeaseTTL || d.Window != DefaultWindow || d.ReadyMaxBytes == 0 {
		t.Fatalf("defaults %+v", d)
	}
}
