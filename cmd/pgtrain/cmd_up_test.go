package main

import (
	"strings"
	"testing"
)

func TestUpBannerMasksPasswords(t *testing.T) {
	got := upBanner("http://127.0.0.1:8080", "nats://alice:pa%/#?@ss@127.0.0.1:4222", "/data/user.token")
	if strings.Contains(got, "pa%") || strings.Contains(got, "ss@127") {
		t.Fatalf("the banner shows the NATS password:\n%s", got)
	}
	if !strings.Contains(got, "nats://alice:xxxxx@127.0.0.1:4222") || !strings.Contains(got, "http://127.0.0.1:8080") {
		t.Fatalf("the banner lost where things listen:\n%s", got)
	}
}
