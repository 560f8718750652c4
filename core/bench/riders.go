package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	meshcastv1 "github.com/meshcast/meshcast/proto/meshcast/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Transport is one way a rider connects.
type Transport string

// The transports a rider mix can name.
const (
	WS      Transport = "ws"      // WebSocket, meshcast.v1.json
	WSProto Transport = "wsproto" // WebSocket, meshcast.v1.proto
	SSE     Transport = "sse"
	GRPC    Transport = "grpc"    // native gRPC over shared HTTP/2 connections
	GRPCWeb Transport = "grpcweb" // gRPC-Web binary over HTTP/1.1
)

// Transports lists every transport in a fixed order.
var Transports = []Transport{WS, WSProto, SSE, GRPC, GRPCWeb}

// Counters are what a set of riders observed; cumulative since the last Measure.
type Counters struct {
	Connected     int64 `json:"connected"`      // riders whose stream is open now
	Opened        int64 `json:"opened"`         // streams opened (first event received) in all
	ConnectFailed int64 `json:"connect_failed"` // attempts that got no stream
	Events        int64 `json:"events"`         // events received (all kinds)
	Upserts       int64 `json:"upserts"`        // upserts received (each one latency sample)
	Snapshots     int64 `json:"snapshots"`
	Cuts          int64 `json:"cuts"`  // streams ended as too slow
	Drops         int64 `json:"drops"` // streams ended otherwise before the run ended
	SeqErrors     int64 `json:"seq_errors"`
	StalledCuts   int64 `json:"stalled_cuts,omitempty"` // cuts of riders that stopped reading on purpose
}

type counters struct {
	connected, opened, connectFailed, events, upserts, snapshots, cuts, drops, seqErrors, stalledCuts atomic.Int64
}

func (c *counters) load() Counters {
	return Counters{c.connected.Load(), c.opened.Load(), c.connectFailed.Load(), c.events.Load(),
		c.upserts.Load(), c.snapshots.Load(), c.cuts.Load(), c.drops.Load(), c.seqErrors.Load(), c.stalledCuts.Load()}
}

// riderSet opens and holds riders, counting what they receive.
type riderSet struct {
	edges     []string // host:port
	radius    uint32
	localAddr net.IP // source address, nil for the default
	grpcConns int
	stallOf   func(i int) bool // riders that stop reading after their snapshot (reliability tests)
	wake      chan struct{}    // closed: stalled riders read again
	wakeOnce  sync.Once

	c         counters
	hist      Histogram
	histBy    [5]Histogram // per transport (index in Transports)
	measuring atomic.Bool
	byTr      [5]atomic.Int64 // connected riders per transport (index in Transports)
	busy      atomic.Int64    // riders that received at least two events on their current stream
	grpcNext  atomic.Uint64   // gRPC riders opened: they take the shared connections in turn

	hc      *http.Client
	hcStall *http.Client         // small receive buffers, for riders that stop reading
	ccs     [][]*grpc.ClientConn // per edge
	mu      sync.Mutex
	stop    []func()
	wg      sync.WaitGroup
	ctx     context.Context
	done    atomic.Bool
}

func newRiderSet(ctx context.Context, edges []string, radius uint32, localAddr net.IP, grpcConns int) (*riderSet, error) {
	rs := &riderSet{edges: edges, radius: radius, localAddr: localAddr, grpcConns: max(grpcConns, 1), ctx: ctx, wake: make(chan struct{})}
	d := &net.Dialer{Timeout: 30 * time.Second}
	if localAddr != nil {
		d.LocalAddr = &net.TCPAddr{IP: localAddr}
	}
	rs.hc = &http.Client{Transport: &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: -1,
		DisableCompression:  true,
		DisableKeepAlives:   true,
		ForceAttemptHTTP2:   false,
	}}
	ds := *d
	ds.Control = func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}
	rs.hcStall = &http.Client{Transport: &http.Transport{DialContext: ds.DialContext, DisableCompression: true, DisableKeepAlives: true}}
	for _, e := range edges {
		var list []*grpc.ClientConn
		for range rs.grpcConns {
			cc, err := grpc.NewClient(e, grpc.WithTransportCredentials(insecure.NewCredentials()),
				// A fixed stream window (no BDP growth): a stream that stops reading fills it.
				grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(16<<20),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					return d.DialContext(ctx, "tcp", addr)
				}))
			if err != nil {
				rs.close()
				return nil, fmt.Errorf("bench: grpc client for %s: %w", e, err)
			}
			list = append(list, cc)
		}
		rs.ccs = append(rs.ccs, list)
	}
	return rs, nil
}

// close ends every rider and waits for their readers.
func (rs *riderSet) close() {
	rs.done.Store(true)
	rs.mu.Lock()
	stops := rs.stop
	rs.stop = nil
	rs.mu.Unlock()
	for _, s := range stops {
		s()
	}
	rs.wg.Wait()
	for _, l := range rs.ccs {
		for _, cc := range l {
			cc.Close()
		}
	}
}

// measure resets the counters of received traffic and the histogram and starts recording.
func (rs *riderSet) measure() {
	rs.c.events.Store(0)
	rs.c.upserts.Store(0)
	rs.c.snapshots.Store(0)
	rs.c.cuts.Store(0)
	rs.c.drops.Store(0)
	rs.hist.Reset()
	for i := range rs.histBy {
		rs.histBy[i].Reset()
	}
	rs.measuring.Store(true)
}

// riderState is one stream's bookkeeping.
type riderState struct {
	rs      *riderSet
	stall   bool
	woken   bool
	tr      int // index in Transports
	seq     uint64
	started bool
	events  int
	opened  chan struct{}
}

func (r *riderState) first() {
	if !r.started {
		r.started = true
		r.rs.c.opened.Add(1)
		r.rs.c.connected.Add(1)
		r.rs.byTr[r.tr].Add(1)
		close(r.opened)
	}
}

// event counts one event; kind: 's' snapshot, 'u' upsert (observedMs set), other.
func (r *riderState) event(seq uint64, kind byte, observedMs int64, now time.Time) {
	r.first()
	rs := r.rs
	rs.c.events.Add(1)
	if r.events++; r.events == 2 {
		rs.busy.Add(1)
	}
	if seq != 0 {
		if seq <= r.seq {
			rs.c.seqErrors.Add(1)
		}
		r.seq = seq
	}
	switch kind {
	case 's':
		rs.c.snapshots.Add(1)
	case 'u':
		rs.c.upserts.Add(1)
		if rs.measuring.Load() && observedMs > 0 {
			d := now.Sub(time.UnixMilli(observedMs))
			rs.hist.Record(d)
			rs.histBy[r.tr].Record(d)
		}
	}
}

// end counts how a stream ended.
func (r *riderState) end(cut bool) {
	if r.started {
		r.rs.c.connected.Add(-1)
		r.rs.byTr[r.tr].Add(-1)
	}
	if r.events >= 2 {
		r.rs.busy.Add(-1)
	}
	if r.rs.done.Load() {
		return
	}
	if r.stall {
		if cut {
			r.rs.c.stalledCuts.Add(1)
		} else {
			r.rs.c.drops.Add(1)
		}
	} else if cut {
		r.rs.c.cuts.Add(1)
	} else if r.started {
		r.rs.c.drops.Add(1)
	}
}

// open starts rider i at (lat, lon) over tr and returns once its first event arrived (or it
// failed). The stream is read until the set closes.
func (rs *riderSet) open(ctx context.Context, i int, tr Transport, lat, lon float64) error {
	edge := rs.edges[i%len(rs.edges)]
	st := &riderState{rs: rs, opened: make(chan struct{}), stall: rs.stallOf != nil && rs.stallOf(i)}
	for k, t := range Transports {
		if t == tr {
			st.tr = k
		}
	}
	sctx, cancel := context.WithCancel(rs.ctx)
	rs.mu.Lock()
	rs.stop = append(rs.stop, cancel)
	rs.mu.Unlock()
	q := url.Values{}
	q.Set("lat", strconv.FormatFloat(lat, 'f', 6, 64))
	q.Set("lon", strconv.FormatFloat(lon, 'f', 6, 64))
	q.Set("radius_m", strconv.FormatUint(uint64(rs.radius), 10))
	errc := make(chan error, 1)
	var run func() error
	switch tr {
	case WS, WSProto:
		run = func() error { return rs.runWS(sctx, st, edge, q, tr == WSProto) }
	case SSE:
		run = func() error { return rs.runSSE(sctx, st, edge, q) }
	case GRPC:
		// in turn, not by i: with a mix, i of one transport share factors with the connections
		cc := rs.ccs[i%len(rs.edges)][(rs.grpcNext.Add(1)-1)%uint64(rs.grpcConns)]
		run = func() error { return rs.runGRPC(sctx, st, cc, lat, lon) }
	case GRPCWeb:
		run = func() error { return rs.runGRPCWeb(sctx, st, edge, lat, lon) }
	default:
		cancel()
		return fmt.Errorf("bench: unknown transport %q", tr)
	}
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		err := run()
		errc <- err
	}()
	select {
	case <-st.opened:
		return nil
	case err := <-errc:
		cancel()
		rs.c.connectFailed.Add(1)
		if err == nil {
			err = errors.New("stream ended before its first event")
		}
		return fmt.Errorf("bench: %s rider %d: %w", tr, i, err)
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
}

func (rs *riderSet) client(st *riderState) *http.Client {
	if st.stall {
		return rs.hcStall
	}
	return rs.hc
}

// stalled blocks a rider that stops reading until its stream is cancelled (true) or the set
// wakes its stalled riders (false: it reads on).
func stalled(ctx context.Context, st *riderState) bool {
	if !st.stall || st.woken {
		return false
	}
	select {
	case <-ctx.Done():
		return true
	case <-st.rs.wake:
		st.woken = true
		return false
	}
}

// wakeStalled makes the stalled riders read again (to see how their streams ended).
func (rs *riderSet) wakeStalled() { rs.wakeOnce.Do(func() { close(rs.wake) }) }

func (rs *riderSet) runWS(ctx context.Context, st *riderState, edge string, q url.Values, binaryFormat bool) error {
	sub := "meshcast.v1.json"
	if binaryFormat {
		sub = "meshcast.v1.proto"
	}
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	c, resp, err := websocket.Dial(dctx, "ws://"+edge+"/v1/ws?"+q.Encode(), &websocket.DialOptions{
		Subprotocols: []string{sub}, HTTPClient: rs.client(st)})
	dcancel()
	if err != nil {
		if resp != nil {
			return fmt.Errorf("websocket: HTTP %d: %w", resp.StatusCode, err)
		}
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	var buf bytes.Buffer
	cut := false
	defer func() { st.end(cut) }()
	for {
		if st.started && stalled(ctx, st) {
			return nil
		}
		_, r, err := c.Reader(ctx)
		if err != nil {
			cut = websocket.CloseStatus(err) == 4008
			return nil
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			cut = websocket.CloseStatus(err) == 4008
			return nil
		}
		now := time.Now()
		b := buf.Bytes()
		if binaryFormat {
			for len(b) > 0 {
				m, n := protowire.ConsumeBytes(b)
				if n < 0 {
					return errors.New("websocket: bad length prefix")
				}
				seq, kind, obs := scanProto(m)
				st.event(seq, kind, obs, now)
				b = b[n:]
			}
			continue
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			seq, kind, obs := scanJSON(line)
			st.event(seq, kind, obs, now)
		}
	}
}

func (rs *riderSet) runSSE(ctx context.Context, st *riderState, edge string, q url.Values) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+edge+"/v1/sse?"+q.Encode(), nil)
	resp, err := rs.client(st).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("sse: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	cut := false
	defer func() { st.end(cut) }()
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		if st.started && stalled(ctx, st) {
			return nil
		}
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer (a large snapshot): only its start matters, copied
			// before the reads of the rest reuse the buffer.
			head := bytes.Clone(line[:min(len(line), 1024)])
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			line = head
		}
		if err != nil {
			return nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("data: ")):
			seq, kind, obs := scanJSON(line[6:])
			st.event(seq, kind, obs, time.Now())
		case bytes.HasPrefix(line, []byte(": too slow")):
			cut = true
		}
	}
}

// rawCodec passes message bytes through (no per-event protobuf objects in the bench).
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

func (rs *riderSet) runGRPC(ctx context.Context, st *riderState, cc *grpc.ClientConn, lat, lon float64) error {
	req, _ := proto.Marshal(&meshcastv1.WatchRequest{Lat: lat, Lon: lon, RadiusM: rs.radius})
	s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, meshcastv1.RiderService_Watch_FullMethodName,
		grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	if err := s.SendMsg(req); err != nil {
		return err
	}
	s.CloseSend()
	cut := false
	defer func() { st.end(cut) }()
	for {
		if st.started && stalled(ctx, st) {
			return nil
		}
		var b []byte
		if err := s.RecvMsg(&b); err != nil {
			cut = status.Code(err) == codes.ResourceExhausted
			if !st.started && err != io.EOF {
				return err
			}
			return nil
		}
		seq, kind, obs := scanProto(b)
		st.event(seq, kind, obs, time.Now())
	}
}

func (rs *riderSet) runGRPCWeb(ctx context.Context, st *riderState, edge string, lat, lon float64) error {
	msg, _ := proto.Marshal(&meshcastv1.WatchRequest{Lat: lat, Lon: lon, RadiusM: rs.radius})
	body := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
	copy(body[5:], msg)
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+edge+meshcastv1.RiderService_Watch_FullMethodName, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("Accept", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := rs.client(st).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("grpc-web: HTTP %d", resp.StatusCode)
	}
	if s := resp.Header.Get("Grpc-Status"); s != "" && s != "0" {
		return fmt.Errorf("grpc-web: status %s %s", s, resp.Header.Get("Grpc-Message"))
	}
	cut := false
	defer func() { st.end(cut) }()
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	var hdr [5]byte
	var buf []byte
	for {
		if st.started && stalled(ctx, st) {
			return nil
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > 64<<20 {
			return fmt.Errorf("grpc-web: frame of %d bytes", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil
		}
		if hdr[0]&0x80 != 0 {
			tr := strings.ToLower(string(buf))
			cut = strings.Contains(tr, "grpc-status: 8") || strings.Contains(tr, "grpc-status:8")
			return nil
		}
		seq, kind, obs := scanProto(buf)
		st.event(seq, kind, obs, time.Now())
	}
}

// scanProto reads seq, the kind and an upsert's observed_at_ms from an encoded RiderEvent
// without building it.
func scanProto(b []byte) (seq uint64, kind byte, observed int64) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return
			}
			seq, b = v, b[n:]
			continue
		case num == 10 && typ == protowire.BytesType:
			kind = 's'
		case num == 11 && typ == protowire.BytesType:
			kind = 'u'
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return
			}
			observed = vehicleObserved(v)
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return
		}
		b = b[n:]
	}
	return
}

func vehicleObserved(b []byte) int64 {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if num == 9 && typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(b)
			return int64(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0
		}
		b = b[n:]
	}
	return 0
}

var (
	jsonSeq      = []byte(`"seq":"`)
	jsonSnapshot = []byte(`"snapshot":`)
	jsonUpsert   = []byte(`"upsert":`)
	jsonObserved = []byte(`"observedAtMs":"`)
)

// scanJSON reads the same from a protojson RiderEvent (the edge's field names, camelCase;
// 64-bit integers are strings) by searching bytes, not parsing.
func scanJSON(b []byte) (seq uint64, kind byte, observed int64) {
	if i := bytes.Index(b, jsonSeq); i >= 0 {
		seq, _ = strconv.ParseUint(string(digits(b[i+len(jsonSeq):])), 10, 64)
	}
	switch {
	case bytes.Contains(b, jsonUpsert):
		kind = 'u'
		if i := bytes.Index(b, jsonObserved); i >= 0 {
			observed, _ = strconv.ParseInt(string(digits(b[i+len(jsonObserved):])), 10, 64)
		}
	case bytes.Contains(b, jsonSnapshot):
		kind = 's'
	}
	return
}

func digits(b []byte) []byte {
	for i, c := range b {
		if c < '0' || c > '9' {
			return b[:i]
		}
	}
	return b
}
