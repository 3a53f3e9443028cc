package access

import "testing"

func TestPrincipalKeys(t *testing.T) {
	def := NewPrincipal("d3f", "d3f")
	alice := NewPrincipal("a11ce", "d3f")
	anon := NewPrincipal("", "d3f")
	tests := []struct {
		name      string
		p         Principal
		isDefault bool
	}{
		{"the default identity", def, true},
		{"a client's own credentials", alice, false},
		{"anonymous where the mirror has credentials", anon, false},
		{"anonymous where the mirror has none", Principal{}, true},
	}
	seen := map[Key[string]]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.IsDefault(); got != tc.isDefault {
				t.Errorf("IsDefault = %v, want %v", got, tc.isDefault)
			}
			if d := tc.p.Default(); !d.IsDefault() || d.ID() != tc.p.def {
				t.Errorf("Default = %+v, want the default identity %q", d, tc.p.def)
			}
			k := KeyOf(tc.p, "docker.io/library/app")
			if k.Of() != "docker.io/library/app" {
				t.Errorf("Of = %q, want what the key names", k.Of())
			}
			if other, dup := seen[k]; dup && tc.p.ID() != "" {
				t.Errorf("the key of %s equals that of %s", tc.name, other)
			}
			seen[k] = tc.name
		})
	}
	if KeyOf(alice, "x") == KeyOf(def, "x") || KeyOf(anon, "x") == KeyOf(alice, "x") {
		t.Error("two identities share a key")
	}
}
