// Package config binds a command's flags to MESHCAST_* environment variables
// and prints usage that names both, so every setting has a flag, an env var
// and a default.
package config

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// EnvName is the environment variable for a flag: MESHCAST_ + the flag's name
// upper-cased with '-' and '.' turned into '_' (redis-url → MESHCAST_REDIS_URL).
func EnvName(flagName string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return "MESHCAST_" + strings.ToUpper(r.Replace(flagName))
}

// Parse parses args into fs, then fills every flag not given on the command
// line from its environment variable (lookup is os.LookupEnv when nil).
// A bad value in either place is an error naming the flag and the variable.
func Parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		env := EnvName(f.Name)
		v, ok := lookup(env)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q (flag -%s): %v", env, v, f.Name, e)
		}
	})
	return err
}

// NewFlagSet returns a flag set for a subcommand whose -help prints summary,
// then every flag with its environment variable and default.
func NewFlagSet(name, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { Usage(fs.Output(), fs, summary) }
	return fs
}

// Usage writes a help text: the summary, then every flag with its env var and
// default.
func Usage(w io.Writer, fs *flag.FlagSet, summary string) {
	if summary != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(summary))
	}
	fmt.Fprintf(w, "Usage: meshcast %s [flags]\n\nFlags (each also read from its environment variable):\n", fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  -%s %s\n      %s\n      env %s", f.Name, name, usage, EnvName(f.Name))
		if f.DefValue != "" {
			fmt.Fprintf(w, ", default %q", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
