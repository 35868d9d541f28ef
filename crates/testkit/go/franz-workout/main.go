// Command franz-workout exercises franz-go (kgo and kadm) end to end, for
// switchyard_testkit::clients::go_workout. It does what ClientWorkout.java does for the Java
// client and prints the same lines:
//
//	franz-workout <bootstrap> <name> <records> [deadline seconds]
//
// With <name> = N it creates topics N and N-txn (3 partitions, replication factor up to 3), then:
//  1. kadm: broker metadata (every node's host:port) and ListTopics;
//  2. an idempotent producer (acks=all, franz-go's default) sends <records> records to N;
//  3. a consumer in group N-group (no autocommit) reads them and commits;
//  4. a transactional producer (transactional id N-txid) commits <records>/10 records to N-txn,
//     then aborts another batch;
//  5. a read_committed consumer reads N-txn to its last stable offset.
//
// Output lines ("<key> <values...>", addresses as host:port):
//
//	client_version franz-go <version>
//	phase <name> at <ms> ms
//	cluster_id <id>
//	node <id> <host>:<port>
//	controller <id>
//	topic_listed <topic>
//	connected <client> <id> <host>:<port>    (every connection each client opened; seed
//	                                          brokers have large negative ids)
//	produced <acked>
//	consumed <total> distinct <distinct> expected <records>
//	group_committed <group> <sum of committed offsets>
//	txn_committed_sent <n>
//	txn_aborted_sent <n>
//	read_committed committed <n> aborted <n>
//	workout ok
//
// A failure prints "workout failed in phase <phase>: <error>" to stderr and exits 1; the
// deadline (default 150 s) exits 3 with "workout timed out in phase <phase>".
//
// The numbered mode (numbered.go) runs a paced producer and a group consumer together, for
// client-switchover drills:
//
//	franz-workout numbered <bootstrap> <topic> <group> <count> <rate> <idle ms>
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	partitions = 3
	wait       = 30 * time.Second
)

var (
	started = time.Now()
	phaseMu sync.Mutex
	phase   = "start"
)

func setPhase(name string) {
	phaseMu.Lock()
	phase = name
	phaseMu.Unlock()
	fmt.Printf("phase %s at %d ms\n", name, time.Since(started).Milliseconds())
}

func currentPhase() string {
	phaseMu.Lock()
	defer phaseMu.Unlock()
	return phase
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "numbered" {
		os.Exit(numberedMain(os.Args[2:]))
	}
	if len(os.Args) < 4 || len(os.Args) > 5 {
		fmt.Fprintln(os.Stderr, "usage: franz-workout <bootstrap> <name> <records> [deadline seconds]")
		os.Exit(2)
	}
	bootstrap, name := os.Args[1], os.Args[2]
	records, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad record count:", err)
		os.Exit(2)
	}
	deadline := 150 * time.Second
	if len(os.Args) == 5 {
		secs, err := strconv.Atoi(os.Args[4])
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad deadline:", err)
			os.Exit(2)
		}
		deadline = time.Duration(secs) * time.Second
	}
	time.AfterFunc(deadline, func() {
		fmt.Fprintf(os.Stderr, "workout timed out in phase %s after %v\n", currentPhase(), deadline)
		os.Exit(3)
	})
	if err := run(strings.Split(bootstrap, ","), name, records); err != nil {
		fmt.Fprintf(os.Stderr, "workout failed in phase %s: %v\n", currentPhase(), err)
		os.Exit(1)
	}
	fmt.Println("workout ok")
}

func franzVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/twmb/franz-go" {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func ctxWait() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), wait)
}

func baseOpts(seeds []string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.RetryTimeout(wait),
		kgo.RequestTimeoutOverhead(10 * time.Second),
	}
}

// connections records every broker address a client dials, to show which addresses the
// client was given.
type connections struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (c *connections) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[fmt.Sprintf("%d %s:%d", meta.NodeID, meta.Host, meta.Port)] = struct{}{}
}

func newClient(client string, opts ...kgo.Opt) (*kgo.Client, func(), error) {
	conns := &connections{seen: map[string]struct{}{}}
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(conns))...)
	if err != nil {
		return nil, nil, err
	}
	return cl, func() {
		cl.Close()
		conns.mu.Lock()
		defer conns.mu.Unlock()
		lines := make([]string, 0, len(conns.seen))
		for seen := range conns.seen {
			lines = append(lines, seen)
		}
		sort.Strings(lines)
		for _, line := range lines {
			fmt.Printf("connected %s %s\n", client, line)
		}
	}, nil
}

func run(seeds []string, name string, records int) error {
	fmt.Printf("client_version franz-go %s\n", franzVersion())
	topic, txnTopic, group := name, name+"-txn", name+"-group"

	cl, closeAdmin, err := newClient("admin", baseOpts(seeds)...)
	if err != nil {
		return err
	}
	defer closeAdmin()
	adm := kadm.NewClient(cl)

	setPhase("metadata")
	ctx, cancel := ctxWait()
	meta, err := adm.BrokerMetadata(ctx)
	cancel()
	if err != nil {
		return err
	}
	fmt.Printf("cluster_id %s\n", meta.Cluster)
	for _, b := range meta.Brokers {
		fmt.Printf("node %d %s:%d\n", b.NodeID, b.Host, b.Port)
	}
	fmt.Printf("controller %d\n", meta.Controller)

	setPhase("create_topics")
	replication := int16(len(meta.Brokers))
	if replication > 3 {
		replication = 3
	}
	ctx, cancel = ctxWait()
	created, err := adm.CreateTopics(ctx, partitions, replication, nil, topic, txnTopic)
	cancel()
	if err != nil {
		return err
	}
	for _, c := range created {
		if c.Err != nil && !errors.Is(c.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating %s: %w", c.Topic, c.Err)
		}
	}

	setPhase("list_topics")
	until := time.Now().Add(wait)
	for {
		ctx, cancel = ctxWait()
		listed, err := adm.ListTopics(ctx)
		cancel()
		if err != nil {
			return err
		}
		if listed.Has(topic) && listed.Has(txnTopic) || time.Now().After(until) {
			for _, t := range []string{topic, txnTopic} {
				if listed.Has(t) {
					fmt.Printf("topic_listed %s\n", t)
				}
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	if err := produce(seeds, topic, records); err != nil {
		return err
	}
	if err := consume(seeds, topic, group, records); err != nil {
		return err
	}
	setPhase("group_offsets")
	ctx, cancel = ctxWait()
	offsets, err := adm.FetchOffsets(ctx, group)
	cancel()
	if err != nil {
		return err
	}
	var sum int64
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At > 0 {
			sum += o.At
		}
	})
	fmt.Printf("group_committed %s %d\n", group, sum)

	count := records / 10
	if count < 1 {
		count = 1
	}
	if err := transact(seeds, name, txnTopic, count); err != nil {
		return err
	}
	return readCommitted(seeds, adm, txnTopic)
}

func produce(seeds []string, topic string, records int) error {
	setPhase("produce")
	opts := append(baseOpts(seeds),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	cl, closeClient, err := newClient("producer", opts...)
	if err != nil {
		return err
	}
	defer closeClient()
	batch := make([]*kgo.Record, records)
	for i := range batch {
		batch[i] = &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("%s-%d", topic, i))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	acked := 0
	for _, r := range cl.ProduceSync(ctx, batch...) {
		if r.Err != nil {
			return fmt.Errorf("producing: %w", r.Err)
		}
		acked++
	}
	fmt.Printf("produced %d\n", acked)
	return nil
}

func consume(seeds []string, topic, group string, records int) error {
	setPhase("group_consume")
	opts := append(baseOpts(seeds),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	cl, closeClient, err := newClient("consumer", opts...)
	if err != nil {
		return err
	}
	defer closeClient()
	seen := make(map[string]struct{}, records)
	total := 0
	until := time.Now().Add(2 * wait)
	for len(seen) < records && time.Now().Before(until) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("fetching %s-%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		fetches.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)] = struct{}{}
			total++
		})
	}
	fmt.Printf("consumed %d distinct %d expected %d\n", total, len(seen), records)
	setPhase("group_commit")
	ctx, cancel := ctxWait()
	defer cancel()
	return cl.CommitUncommittedOffsets(ctx)
}

func transact(seeds []string, name, txnTopic string, count int) error {
	setPhase("txn_init")
	opts := append(baseOpts(seeds),
		kgo.DefaultProduceTopic(txnTopic),
		kgo.TransactionalID(name+"-txid"),
		kgo.TransactionTimeout(wait),
	)
	cl, closeClient, err := newClient("transactional", opts...)
	if err != nil {
		return err
	}
	defer closeClient()
	for _, outcome := range []struct {
		prefix, sent string
		commit       kgo.TransactionEndTry
	}{{"committed", "txn_committed_sent", kgo.TryCommit}, {"aborted", "txn_aborted_sent", kgo.TryAbort}} {
		setPhase("txn_" + outcome.prefix)
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
		batch := make([]*kgo.Record, count)
		for i := range batch {
			batch[i] = &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("%s-%d", outcome.prefix, i))}
		}
		ctx, cancel := ctxWait()
		results := cl.ProduceSync(ctx, batch...)
		cancel()
		if err := results.FirstErr(); err != nil {
			return fmt.Errorf("producing in the transaction: %w", err)
		}
		ctx, cancel = ctxWait()
		err := cl.EndTransaction(ctx, outcome.commit)
		cancel()
		if err != nil {
			return fmt.Errorf("ending the transaction: %w", err)
		}
		fmt.Printf("%s %d\n", outcome.sent, count)
	}
	return nil
}

func readCommitted(seeds []string, adm *kadm.Client, txnTopic string) error {
	setPhase("read_committed")
	ctx, cancel := ctxWait()
	stable, err := adm.ListCommittedOffsets(ctx, txnTopic)
	cancel()
	if err != nil {
		return err
	}
	end := map[int32]int64{}
	stable.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	opts := append(baseOpts(seeds),
		kgo.ConsumeTopics(txnTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// The commit and abort markers come back too, so the position is known to reach the
		// last stable offset even where it ends in aborted records.
		kgo.KeepControlRecords(),
	)
	cl, closeClient, err := newClient("read_committed", opts...)
	if err != nil {
		return err
	}
	defer closeClient()
	next := map[int32]int64{}
	reached := func() bool {
		for p, lso := range end {
			if next[p] < lso {
				return false
			}
		}
		return true
	}
	committed, aborted := 0, 0
	until := time.Now().Add(2 * wait)
	for !reached() && time.Now().Before(until) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("fetching %s-%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		fetches.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			switch {
			case strings.HasPrefix(string(r.Value), "committed-"):
				committed++
			case strings.HasPrefix(string(r.Value), "aborted-"):
				aborted++
			}
		})
	}
	fmt.Printf("read_committed committed %d aborted %d\n", committed, aborted)
	return nil
}
