package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var updateReadme = flag.Bool("update-readme", false, "rewrite README.md's configuration reference from the flag sets")

const (
	refBegin = "<!-- config-reference:begin (go test -run Readme -update-readme .) -->"
	refEnd   = "<!-- config-reference:end -->"
)

// TestReadmeConfigurationReference keeps README.md's configuration reference equal to what
// the subcommands' -help prints: every flag, its environment variable and its default.
func TestReadmeConfigurationReference(t *testing.T) {
	var ref strings.Builder
	for _, c := range commands {
		help := helpOf(t, c.name)
		fmt.Fprintf(&ref, "\n#### `meshcast %s`\n\n| flag | env | default | meaning |\n|---|---|---|---|\n", c.name)
		for _, f := range parseHelp(help) {
			def := ""
			if f.def != "" {
				def = "`" + machineNeutral(f.def) + "`"
			}
			fmt.Fprintf(&ref, "| `-%s` | `%s` | %s | %s |\n", f.name, f.env, def, strings.ReplaceAll(f.usage, "|", `\|`))
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	i, j := bytes.Index(readme, []byte(refBegin)), bytes.Index(readme, []byte(refEnd))
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", refBegin, refEnd)
	}
	want := refBegin + "\n" + ref.String() + "\n"
	got := string(readme[i:j])
	if got == want {
		return
	}
	if *updateReadme {
		out := append(append(append([]byte{}, readme[:i]...), want...), readme[j:]...)
		if err := os.WriteFile("README.md", out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's configuration reference is out of date: run go test -run Readme -update-readme .")
}

// machineNeutral replaces the parts of a default computed on this machine (client ids made of
// the host name or the process id) by placeholders.
func machineNeutral(def string) string {
	if h, err := os.Hostname(); err == nil && h != "" {
		def = strings.ReplaceAll(def, h, "<hostname>")
	}
	return strings.ReplaceAll(def, strconv.Itoa(os.Getpid()), "<pid>")
}

type helpFlag struct{ name, env, def, usage string }

var (
	flagLine = regexp.MustCompile(`^  -(\S+)`)
	envLine  = regexp.MustCompile(`^      env ([A-Z0-9_]+)(?:, default "(.*)")?$`)
)

func parseHelp(help string) []helpFlag {
	var out []helpFlag
	lines := strings.Split(help, "\n")
	for i := 0; i+2 < len(lines); i++ {
		m := flagLine.FindStringSubmatch(lines[i])
		e := envLine.FindStringSubmatch(lines[i+2])
		if m == nil || e == nil {
			continue
		}
		out = append(out, helpFlag{name: m[1], env: e[1], def: e[2], usage: strings.TrimSpace(lines[i+1])})
		i += 2
	}
	return out
}

// helpOf returns what `meshcast <name> -help` prints (flag sets write usage to os.Stderr).
func helpOf(t *testing.T, name string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { out.ReadFrom(r); close(done) }()
	err = dispatch(context.Background(), []string{name, "-help"}, &bytes.Buffer{}, &bytes.Buffer{})
	os.Stderr = saved
	w.Close()
	<-done
	if err != flag.ErrHelp {
		t.Fatalf("meshcast %s -help: %v", name, err)
	}
	return out.String()
}
