package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcSample is one reading of a server process: CPU seconds used so far and resident memory.
type ProcSample struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
}

// Source reads a server's CPU and RSS: from /proc/<PID> when PID is set, else from the
// Prometheus text at Admin (http://host:port/metrics, process_cpu_seconds_total and
// process_resident_memory_bytes).
type Source struct {
	Name  string
	PID   int
	Admin string
}

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// Sample reads the source now.
func (s Source) Sample() (ProcSample, error) {
	if s.PID > 0 {
		return procSample(s.PID)
	}
	return metricsSample(s.Admin)
}

func procSample(pid int) (ProcSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("bench: %w", err)
	}
	// Fields after the command name (which may hold spaces) start at state (field 3).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ProcSample{}, fmt.Errorf("bench: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return ProcSample{}, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // utime, field 14
	st, _ := strconv.ParseFloat(f[12], 64) // stime, field 15
	out := ProcSample{CPUSeconds: (ut + st) / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("bench: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			out.RSSBytes = kb << 10
		}
	}
	return out, nil
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

func metricsSample(admin string) (ProcSample, error) {
	u := admin
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if !strings.HasSuffix(u, "/metrics") {
		u += "/metrics"
	}
	resp, err := metricsClient.Get(u)
	if err != nil {
		return ProcSample{}, fmt.Errorf("bench: metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// parseMetrics picks the two process metrics out of Prometheus text.
func parseMetrics(r io.Reader) (ProcSample, error) {
	var out ProcSample
	found := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch name {
		case "process_cpu_seconds_total":
			out.CPUSeconds, _ = strconv.ParseFloat(strings.TrimSpace(val), 64)
			found++
		case "process_resident_memory_bytes":
			f, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
			out.RSSBytes = int64(f)
			found++
		}
	}
	if found < 2 {
		return out, fmt.Errorf("bench: metrics lack process_cpu_seconds_total or process_resident_memory_bytes")
	}
	return out, sc.Err()
}
