// The numbered mode: what a client-switchover drill needs to see, record by record, from
// franz-go while the gateway moves it between clusters (switchyard_testkit::numbered::FranzNumbered).
//
//	franz-workout numbered <bootstrap> <topic> <group> <count> <rate> <idle ms>
//
// One producer (franz-go's defaults: idempotent, acks=all, retrying until it succeeds) sends
// records 1..count (key "<n>", value "seq-<n>", n zero-padded to 8 digits) at <rate> per second
// while a consumer in <group> (reset to the start when the group has no offsets, autocommit every
// second) reads <topic>. The consumer stops when every record was seen, or when the producer is
// done and nothing arrived for <idle ms>. The lines are NumberedProducer.java's and
// NumberedConsumer.java's:
//
//	ACK <n> <partition> <offset> <epochMillis>         per acknowledged record
//	ERR <n> <error>                                    per failed record
//	ERR consumer <error>                               per error a poll returned
//	ASSIGNED <topic-partition,...>                     per assignment
//	REC <value> <partition> <offset> <epochMillis>     per record received
//	DONE sent=<n> acked=<n> errors=<n> maxAckGapMs=<ms> records=<n> distinct=<n> maxPollGapMs=<ms>
//
// Client logs (level info) go to stderr. The run ends by itself within 120 s (exit 3 then).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const numberedDeadline = 120 * time.Second

// outMu serializes the lines the producer's callbacks and the consumer print.
var outMu sync.Mutex

func emit(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func millis() int64 { return time.Now().UnixMilli() }

func numberedMain(args []string) int {
	if len(args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: franz-workout numbered <bootstrap> <topic> <group> <count> <rate> <idle ms>")
		return 2
	}
	numbers := make([]int, 3)
	for i, arg := range args[3:] {
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "not a positive number: %q\n", arg)
			return 2
		}
		numbers[i] = n
	}
	time.AfterFunc(numberedDeadline, func() {
		fmt.Fprintf(os.Stderr, "numbered run timed out after %v\n", numberedDeadline)
		os.Exit(3)
	})
	seeds, topic, group := strings.Split(args[0], ","), args[1], args[2]
	count, rate, idle := numbers[0], numbers[1], time.Duration(numbers[2])*time.Millisecond
	logger := kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, nil))

	producer, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		return 1
	}
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitInterval(time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			emit("ASSIGNED %s", assignedList(assigned))
		}),
		logger,
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		return 1
	}
	produced := make(chan producerTotals, 1)
	go func() { produced <- produceNumbered(producer, count, rate) }()
	totals := consumeNumbered(consumer, count, idle, produced)
	consumer.Close()
	producer.Close()
	emit("DONE sent=%d acked=%d errors=%d maxAckGapMs=%d records=%d distinct=%d maxPollGapMs=%d",
		count, totals.acked, totals.errors, totals.maxAckGapMs, totals.records, totals.distinct, totals.maxPollGapMs)
	return 0
}

func assignedList(assigned map[string][]int32) string {
	var names []string
	for topic, partitions := range assigned {
		for _, p := range partitions {
			names = append(names, fmt.Sprintf("%s-%d", topic, p))
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

type producerTotals struct {
	acked, errors int
	maxAckGapMs   int64
}

type consumerTotals struct {
	producerTotals
	records, distinct int
	maxPollGapMs      int64
}

// produceNumbered sends the records at the rate and returns once every one was acknowledged or
// failed.
func produceNumbered(cl *kgo.Client, count, rate int) producerTotals {
	var (
		mu      sync.Mutex
		totals  producerTotals
		lastAck int64 = -1
		pending sync.WaitGroup
	)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for n := 1; n <= count; n++ {
		time.Sleep(time.Until(start.Add(time.Duration(n-1) * interval)))
		record := &kgo.Record{Key: []byte(strconv.Itoa(n)), Value: []byte(fmt.Sprintf("seq-%08d", n))}
		pending.Add(1)
		cl.Produce(context.Background(), record, func(r *kgo.Record, err error) {
			defer pending.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				totals.errors++
				emit("ERR %d %v", n, err)
				return
			}
			now := millis()
			if lastAck >= 0 && now-lastAck > totals.maxAckGapMs {
				totals.maxAckGapMs = now - lastAck
			}
			lastAck = now
			totals.acked++
			emit("ACK %d %d %d %d", n, r.Partition, r.Offset, now)
		})
	}
	pending.Wait()
	return totals
}

// consumeNumbered polls until every record was seen, or the producer is done (its totals come
// on produced) and nothing arrived for idle.
func consumeNumbered(cl *kgo.Client, count int, idle time.Duration, produced <-chan producerTotals) consumerTotals {
	var totals consumerTotals
	seen := make(map[string]struct{}, count)
	producerDone := false
	lastRecords, lastProgress := int64(-1), time.Now()
	for len(seen) < count && !(producerDone && time.Since(lastProgress) >= idle) {
		select {
		case p := <-produced:
			totals.producerTotals, producerDone = p, true
			lastProgress = time.Now()
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fetches := cl.PollFetches(ctx)
		cancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				emit("ERR consumer %s-%d: %v", fe.Topic, fe.Partition, fe.Err)
			}
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		now := millis()
		if lastRecords >= 0 && now-lastRecords > totals.maxPollGapMs {
			totals.maxPollGapMs = now - lastRecords
		}
		lastRecords, lastProgress = now, time.Now()
		fetches.EachRecord(func(r *kgo.Record) {
			totals.records++
			if strings.HasPrefix(string(r.Value), "seq-") {
				seen[string(r.Value)] = struct{}{}
			}
			emit("REC %s %d %d %d", r.Value, r.Partition, r.Offset, now)
		})
	}
	if !producerDone {
		totals.producerTotals = <-produced
	}
	totals.distinct = len(seen)
	return totals
}
