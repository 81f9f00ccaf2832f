package main

import (
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestEveryOptionDocumented: every serve flag has an OCCASE_ environment
// variable named after it, a usage text for --help, and a row in
// README.md's options table or docs/operations.md, so the three cannot
// drift apart. It names every flag that misses one.
func TestEveryOptionDocumented(t *testing.T) {
	var docs string
	for _, f := range []string{"README.md", "docs/operations.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs += string(b)
	}
	d := serveDefaults()
	var noEnv, noUsage, noDoc []string
	for _, f := range append(append(serveFlags(&d), pushFlags(&d)...), imageLifecycleFlags(&d)...) {
		name := f.Names()[0]
		want := "OCCASE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		ev, _ := f.(interface{ GetEnvVars() []string })
		if ev == nil || len(ev.GetEnvVars()) != 1 || ev.GetEnvVars()[0] != want {
			noEnv = append(noEnv, name)
		}
		if u, _ := f.(cli.DocGenerationFlag); u == nil || u.GetUsage() == "" {
			noUsage = append(noUsage, name)
		}
		if !strings.Contains(docs, "`--"+name+"`") {
			noDoc = append(noDoc, name)
		}
	}
	if len(noEnv) > 0 {
		t.Errorf("flags without their OCCASE_ variable: %s", strings.Join(noEnv, " "))
	}
	if len(noUsage) > 0 {
		t.Errorf("flags without a usage text: %s", strings.Join(noUsage, " "))
	}
	if len(noDoc) > 0 {
		t.Errorf("flags in neither README.md's options table nor docs/operations.md: %s", strings.Join(noDoc, " "))
	}
}
