// Package webtest is shared by the tests that need web/'s Node packages (the node unit tests and
// the browser end-to-end test): it installs them once, whichever test process gets there first.
package webtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// EnsureNodeModules runs `npm ci` in webDir when node_modules is missing or older than
// package-lock.json. It holds an advisory lock on package-lock.json meanwhile, so that test
// processes running at once (go test runs packages in parallel) do not install over each other.
func EnsureNodeModules(ctx context.Context, webDir string) error {
	f, err := os.Open(filepath.Join(webDir, "package-lock.json"))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	lock, err := f.Stat()
	if err != nil {
		return err
	}
	hidden, err := os.Stat(filepath.Join(webDir, "node_modules", ".package-lock.json"))
	if err == nil && !hidden.ModTime().Before(lock.ModTime()) {
		return nil
	}
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "FORCE_COLOR=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %w\n%s", webDir, err, out)
	}
	return nil
}
