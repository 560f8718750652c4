package mosquittotest_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshcast/meshcast/core/mosquittotest"
)

// client connects a paho client; received messages go to msgs.
func client(t *testing.T, addr, id string, clean bool, msgs chan<- string) (*paho.Client, *paho.Connack) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if msgs != nil {
				msgs <- pr.Packet.Topic + " " + string(pr.Packet.Payload)
			}
			return true, nil
		}},
	})
	expiry := uint32(3600)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca
}

func publish(t *testing.T, c *paho.Client, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
}

func subscribe(t *testing.T, c *paho.Client, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
		return ""
	}
}

func TestPublishSubscribe(t *testing.T) {
	b := mosquittotest.Start(t)
	if !strings.HasPrefix(b.URL(), "mqtt://127.0.0.1:") {
		t.Fatalf("URL %q", b.URL())
	}
	msgs := make(chan string, 10)
	sub, _ := client(t, b.Addr, "sub", true, msgs)
	subscribe(t, sub, "$share/g/taxi/+/+/state")
	pub, _ := client(t, b.Addr, "pub", true, nil)
	publish(t, pub, "taxi/acme/v1/state", "hello")
	if got := recv(t, msgs); got != "taxi/acme/v1/state hello" {
		t.Fatalf("got %q", got)
	}
}

// A clean Shutdown saves the persistence file: after Restart the kept session is there with
// the messages queued while its client was away.
func TestRestartKeepsPersistentSessions(t *testing.T) {
	b := mosquittotest.Start(t, mosquittotest.Options{Persistence: true})
	// Clean Start false: mosquitto 2.0.11 drops a session at disconnect if it was created with
	// Clean Start true, whatever its Session Expiry Interval.
	sub, _ := client(t, b.Addr, "keeper", false, nil)
	subscribe(t, sub, "t/#")
	_ = sub.Disconnect(&paho.Disconnect{})
	pub, _ := client(t, b.Addr, "pub", true, nil)
	publish(t, pub, "t/1", "queued")
	b.Shutdown()
	if b.Alive() {
		t.Fatal("alive after Shutdown")
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 10)
	_, ca := client(t, b.Addr, "keeper", false, msgs)
	if !ca.SessionPresent {
		t.Fatal("session lost across the restart")
	}
	if got := recv(t, msgs); got != "t/1 queued" {
		t.Fatalf("got %q", got)
	}
}

// Kill loses the in-memory state; Restart brings the broker back on the same port.
func TestKillRestart(t *testing.T) {
	b := mosquittotest.Start(t)
	addr := b.Addr
	b.Kill()
	if b.Alive() {
		t.Fatal("alive after Kill")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting connections after Kill")
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if b.Addr != addr {
		t.Fatalf("restarted on %s, want %s", b.Addr, addr)
	}
	_, ca := client(t, b.Addr, "after", false, nil)
	if ca.SessionPresent {
		t.Fatal("a session survived SIGKILL without persistence")
	}
}
