package names

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestJoin(t *testing.T) {
	long := strings.Repeat("a", 60)
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{"short names are joined as they are", []string{"daily-backups", "data-db-0", "29001234"}, "daily-backups-data-db-0-29001234"},
		{"dots of subdomain names become dashes", []string{"backup", "db.example"}, "backup-db-example"},
		{"exactly the limit is kept", []string{strings.Repeat("b", 63)}, strings.Repeat("b", 63)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Join(tc.parts...); got != tc.want {
				t.Fatalf("Join(%q) = %q, want %q", tc.parts, got, tc.want)
			}
		})
	}

	cut := Join(long, "pvc", "29001234")
	if len(cut) != MaxLength {
		t.Fatalf("a cut name has %d characters, want %d: %q", len(cut), MaxLength, cut)
	}
	if !strings.HasPrefix(cut, long[:MaxLength-hashLength-1]) {
		t.Fatalf("a cut name lost its readable prefix: %q", cut)
	}
	if again := Join(long, "pvc", "29001234"); again != cut {
		t.Fatalf("Join is not deterministic: %q then %q", cut, again)
	}
	if other := Join(long, "pvc", "29001235"); other == cut {
		t.Fatalf("two inputs that differ only past the cut share the name %q", cut)
	}
}

func TestJoinAlwaysMakesAValidLabel(t *testing.T) {
	for _, parts := range [][]string{
		{strings.Repeat("x", 52) + "-", "y"}, // a dash lands right before the hash
		{strings.Repeat("a", 100)},
		{"policy", strings.Repeat("p.q", 40), "123"},
	} {
		got := Join(parts...)
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("Join(%q) = %q is not a DNS-1123 label: %v", parts, got, errs)
		}
	}
}
