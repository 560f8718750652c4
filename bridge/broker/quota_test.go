package broker

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshcast/meshcast/core/testwait"
)

// TestQuotaExhaustionDoesNotDeadlock drives mochi towards both hazards of its Receive Maximum
// handling (see the package doc). Two subscribers share one subscription and acknowledge every
// message while four publishers deliver 4,000 QoS 1 messages to them from eight goroutines
// each, so that every PUBACK the subscribers send meets concurrent deliveries: with Receive
// Maximum 1 and 2 their quotas would be exhausted on nearly every delivery (without the hook
// every run stalls on parked messages); with 2048, the bridge's default, they would have quota
// left and take the nested read lock after every PUBACK (without the hook 3 of 20 runs here
// deadlocked in Inflight.NextImmediate against Inflight.Set). Every message must arrive before
// the deadline, and the broker must have dropped the subscribers' announced Receive Maximum,
// the setup that keeps mochi off its quota path.
func TestQuotaExhaustionDoesNotDeadlock(t *testing.T) {
	for _, tt := range []struct {
		name    string
		recvMax [2]uint16
	}{
		{"quota exhausted (Receive Maximum 1 and 2)", [2]uint16{1, 2}},
		{"quota left (Receive Maximum 2048, the bridge's)", [2]uint16{2048, 2048}},
	} {
		t.Run(tt.name, func(t *testing.T) { deliverUnderQuota(t, tt.recvMax) })
	}
}

func deliverUnderQuota(t *testing.T, recvMax [2]uint16) {
	const (
		publishers = 4
		perPub     = 1000
		goroutines = 8
		total      = publishers * perPub
	)
	b, err := Start(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var received atomic.Int64
	for i, rm := range recvMax {
		id := fmt.Sprintf("sub-%d", i)
		c := dial(t, ctx, b, id, &rm, func(paho.PublishReceived) (bool, error) {
			received.Add(1)
			return true, nil
		})
		sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g/load/#", QoS: 1}}})
		if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
			t.Fatalf("subscribe %s: %v %v", id, sa, err)
		}
		cl, ok := b.srv.Clients.Get(id)
		if !ok {
			t.Fatalf("broker does not know client %s", id)
		}
		if got := cl.Properties.Props.ReceiveMaximum; got != 0 {
			t.Fatalf("client %s: the broker keeps Receive Maximum %d, want 0 (no send quota)", id, got)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, publishers*goroutines)
	for p := range publishers {
		c := dial(t, ctx, b, fmt.Sprintf("pub-%d", p), nil, nil)
		for g := range goroutines {
			wg.Go(func() {
				for k := g; k < perPub; k += goroutines {
					_, err := c.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("load/%d/%d", p, k), QoS: 1, Payload: []byte("x")})
					if err != nil {
						errs <- fmt.Errorf("publisher %d message %d: %w", p, k, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testwait.For(t, 60*time.Second, fmt.Sprintf("all %d messages to be delivered (a stuck broker delivers no more)", total),
		func() bool { return received.Load() >= total })
	if n := received.Load(); n != total {
		t.Fatalf("%d messages delivered, want %d", n, total)
	}
}

// dial connects a paho client to b with the given Receive Maximum (nil: none announced) and
// publish handler, and disconnects it when the test ends.
func dial(t *testing.T, ctx context.Context, b *Broker, id string, recvMax *uint16, onPub func(paho.PublishReceived) (bool, error)) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{ClientID: id, Conn: conn}
	if onPub != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPub}
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if recvMax != nil {
		cp.Properties = &paho.ConnectProperties{ReceiveMaximum: recvMax}
	}
	if _, err := c.Connect(ctx, cp); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}
