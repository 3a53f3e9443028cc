package access

import (
	"fmt"
	"testing"
)

// BenchmarkCheck measures a decision against a policy of 10 allow and 100
// deny patterns, the cost every request pays before anything else.
func BenchmarkCheck(b *testing.B) {
	cfg := Config{DenyDigests: []string{blocked}}
	for i := range 10 {
		cfg.Allow = append(cfg.Allow, fmt.Sprintf("registry%d.example.com/team/**", i))
	}
	cfg.Allow = append(cfg.Allow, "docker.io/library/*")
	for i := range 100 {
		cfg.Deny = append(cfg.Deny, fmt.Sprintf("docker.io/library/forbidden%d", i), fmt.Sprintf("docker.io/*/*:*-rc%d*", i))
	}
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if !p.Check("docker.io", "library/nginx", "1.27").Allowed {
			b.Fatal("refused")
		}
	}
}
