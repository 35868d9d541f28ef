// Latency with microsecond resolution, for `cargo xtask bench`.
//
// Kafka's ProducerPerformance and EndToEndLatency report percentiles in whole milliseconds,
// too coarse to see a proxy that adds a fraction of a millisecond. This program runs the same
// two measurements with System.nanoTime() and prints percentiles in milliseconds with three
// decimals. Run with the Java source launcher:
//
//   java -cp '<kafka jars>/*' LatencyProbe.java <bootstrap> <topic> <rate> <seconds> <size> <acks> <e2e topic> <e2e count>
//
// 1. Publish latency at a fixed rate (like ProducerPerformance --throughput): `rate` records/s of
//    `size` bytes for `seconds`, producer defaults plus `acks`; the latency of a record is from
//    just before send() to its callback. The first 10% are warm-up and not counted.
// 2. End-to-end latency (like EndToEndLatency): `e2e count` times, send one record
//    synchronously (linger.ms=0) and poll it back with a consumer assigned to every partition
//    of `e2e topic` (fetch.max.wait.ms=0); the first 5% are warm-up. Skipped when the count is 0.
//
// Output, one line per measurement:
//   RESULT <produce|e2e> n=<count> avg_ms=<> p50_ms=<> p99_ms=<> p999_ms=<> max_ms=<> rate=<records/s>
//
// 3. Closed loop, both sides in one JVM (`closed` as the first argument):
//
//   java ... LatencyProbe.java closed <topic> <e2e topic> <rounds> <per round> <e2e per round> <size> <out dir> <name>=<bootstrap>...
//
//    One producer per side (acks=1, linger.ms=0), each sending one record and waiting for its
//    acknowledgement before the next; `rounds` rounds of `per round` records per side, the sides
//    taking turns within a round (round r starts with side r mod n) so drift hits all alike. Then the same for
//    produce->consume round trips (`e2e per round` per side per round, 0 to skip). Warm-up
//    (a tenth of a round per side, at least 200) is not counted. Every sample, in microseconds,
//    goes to <out dir>/<closed|e2e>-<name>.txt, one a line; RESULT lines are `closed-<name>` and
//    `e2e-<name>`.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class LatencyProbe {
    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("closed")) {
            closed(args);
            return;
        }
        if (args.length != 8) {
            System.err.println("usage: LatencyProbe <bootstrap> <topic> <rate> <seconds> <size> <acks> <e2e topic> <e2e count>");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        double rate = Double.parseDouble(args[2]);
        double seconds = Double.parseDouble(args[3]);
        int size = Integer.parseInt(args[4]);
        String acks = args[5];
        String e2eTopic = args[6];
        int e2eCount = Integer.parseInt(args[7]);
        if (rate > 0 && seconds > 0) {
            produce(bootstrap, topic, rate, seconds, size, acks);
        }
        if (e2eCount > 0) {
            endToEnd(bootstrap, e2eTopic, e2eCount, size, acks);
        }
    }

    static Properties producerProps(String bootstrap, String acks) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", acks);
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        return props;
    }

    static void produce(String bootstrap, String topic, double rate, double seconds, int size, String acks)
            throws Exception {
        int total = (int) Math.max(1, Math.round(rate * seconds));
        long[] latencies = new long[total];
        byte[] payload = new byte[size];
        new Random(1).nextBytes(payload);
        AtomicInteger errors = new AtomicInteger();
        CountDownLatch done = new CountDownLatch(total);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps(bootstrap, acks))) {
            producer.partitionsFor(topic); // metadata before the clock starts
            double interval = 1e9 / rate;
            long start = System.nanoTime();
            for (int i = 0; i < total; i++) {
                long due = start + (long) (i * interval);
                long now = System.nanoTime();
                if (now < due) {
                    LockSupport.parkNanos(due - now);
                    now = System.nanoTime();
                }
                final int index = i;
                final long sentAt = now;
                producer.send(new ProducerRecord<>(topic, payload), (metadata, exception) -> {
                    if (exception != null) {
                        errors.incrementAndGet();
                        latencies[index] = -1;
                    } else {
                        latencies[index] = System.nanoTime() - sentAt;
                    }
                    done.countDown();
                });
            }
            producer.flush();
            if (!done.await(120, TimeUnit.SECONDS)) {
                throw new IllegalStateException("records still unacknowledged after 120 s");
            }
            double elapsed = (System.nanoTime() - start) / 1e9;
            if (errors.get() > 0) {
                throw new IllegalStateException(errors.get() + " of " + total + " sends failed");
            }
            print("produce", Arrays.copyOfRange(latencies, total / 10, total), total / elapsed);
        }
    }

    static void endToEnd(String bootstrap, String topic, int count, int size, String acks) throws Exception {
        Properties producerProps = producerProps(bootstrap, acks);
        producerProps.put("linger.ms", "0");
        Properties consumerProps = new Properties();
        consumerProps.put("bootstrap.servers", bootstrap);
        consumerProps.put("group.id", "latency-probe-" + System.currentTimeMillis());
        consumerProps.put("enable.auto.commit", "false");
        consumerProps.put("auto.offset.reset", "latest");
        consumerProps.put("fetch.max.wait.ms", "0");
        consumerProps.put("key.deserializer", ByteArrayDeserializer.class.getName());
        consumerProps.put("value.deserializer", ByteArrayDeserializer.class.getName());
        long[] latencies = new long[count];
        Random random = new Random(2);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps);
             KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProps)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic)) {
                partitions.add(new TopicPartition(info.topic(), info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToEnd(partitions);
            for (TopicPartition partition : partitions) {
                consumer.position(partition);
            }
            long start = System.nanoTime();
            for (int i = 0; i < count; i++) {
                byte[] message = new byte[size];
                random.nextBytes(message);
                long begin = System.nanoTime();
                producer.send(new ProducerRecord<>(topic, message)).get();
                ConsumerRecord<byte[], byte[]> received = null;
                while (received == null) {
                    if (System.nanoTime() - begin > 60_000_000_000L) {
                        throw new IllegalStateException("message " + i + " not consumed within 60 s");
                    }
                    ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<byte[], byte[]> record : records) {
                        if (received != null) {
                            throw new IllegalStateException("more than one record consumed for message " + i);
                        }
                        received = record;
                    }
                }
                latencies[i] = System.nanoTime() - begin;
                if (!Arrays.equals(received.value(), message)) {
                    throw new IllegalStateException("consumed a different record than message " + i);
                }
            }
            double elapsed = (System.nanoTime() - start) / 1e9;
            print("e2e", Arrays.copyOfRange(latencies, count / 20, count), count / elapsed);
        }
    }

    static void closed(String[] args) throws Exception {
        if (args.length < 9) {
            System.err.println("usage: LatencyProbe closed <topic> <e2e topic> <rounds> <per round> <e2e per round> <size> <out dir> <name>=<bootstrap>...");
            System.exit(2);
        }
        String topic = args[1];
        String e2eTopic = args[2];
        int rounds = Integer.parseInt(args[3]);
        int perRound = Integer.parseInt(args[4]);
        int e2ePerRound = Integer.parseInt(args[5]);
        int size = Integer.parseInt(args[6]);
        java.nio.file.Path out = java.nio.file.Paths.get(args[7]);
        int n = args.length - 8;
        String[] sides = new String[n];
        String[] bootstraps = new String[n];
        for (int s = 0; s < n; s++) {
            String[] side = args[8 + s].split("=", 2);
            sides[s] = side[0];
            bootstraps[s] = side[1];
        }
        byte[] payload = new byte[size];
        new Random(3).nextBytes(payload);
        List<KafkaProducer<byte[], byte[]>> producers = new ArrayList<>();
        List<KafkaConsumer<byte[], byte[]>> consumers = new ArrayList<>();
        try {
            for (String bootstrap : bootstraps) {
                Properties props = producerProps(bootstrap, "1");
                props.put("linger.ms", "0");
                KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props);
                producer.partitionsFor(topic);
                producer.partitionsFor(e2eTopic);
                producers.add(producer);
                if (e2ePerRound > 0) {
                    consumers.add(assignedConsumer(bootstrap, e2eTopic));
                }
            }
            int warmup = Math.max(200, perRound / 10);
            long[][] closed = new long[n][rounds * perRound];
            for (int s = 0; s < n; s++) {
                sendOneByOne(producers.get(s), topic, payload, new long[warmup], 0, warmup);
            }
            // Round r starts with side r mod n: each side goes first equally often.
            for (int r = 0; r < rounds; r++) {
                for (int k = 0; k < n; k++) {
                    int s = (r + k) % n;
                    sendOneByOne(producers.get(s), topic, payload, closed[s], r * perRound, perRound);
                }
            }
            for (int s = 0; s < n; s++) {
                dump(out.resolve("closed-" + sides[s] + ".txt"), closed[s]);
                print("closed-" + sides[s], closed[s].clone(), 0);
            }
            if (e2ePerRound > 0) {
                int e2eWarmup = Math.max(100, e2ePerRound / 10);
                long[][] e2e = new long[n][rounds * e2ePerRound];
                for (int s = 0; s < n; s++) {
                    roundTrips(producers.get(s), consumers.get(s), e2eTopic, size, new long[e2eWarmup], 0, e2eWarmup);
                }
                for (int r = 0; r < rounds; r++) {
                    for (int k = 0; k < n; k++) {
                        int s = (r + k) % n;
                        roundTrips(producers.get(s), consumers.get(s), e2eTopic, size, e2e[s], r * e2ePerRound, e2ePerRound);
                    }
                }
                for (int s = 0; s < n; s++) {
                    dump(out.resolve("e2e-" + sides[s] + ".txt"), e2e[s]);
                    print("e2e-" + sides[s], e2e[s].clone(), 0);
                }
            }
        } finally {
            for (KafkaProducer<byte[], byte[]> p : producers) {
                p.close();
            }
            for (KafkaConsumer<byte[], byte[]> c : consumers) {
                c.close();
            }
        }
    }

    static void sendOneByOne(KafkaProducer<byte[], byte[]> producer, String topic, byte[] payload, long[] into,
            int from, int count) throws Exception {
        for (int i = 0; i < count; i++) {
            long begin = System.nanoTime();
            producer.send(new ProducerRecord<>(topic, payload)).get();
            into[from + i] = System.nanoTime() - begin;
        }
    }

    static KafkaConsumer<byte[], byte[]> assignedConsumer(String bootstrap, String topic) {
        Properties consumerProps = new Properties();
        consumerProps.put("bootstrap.servers", bootstrap);
        consumerProps.put("group.id", "latency-probe-closed-" + System.nanoTime());
        consumerProps.put("enable.auto.commit", "false");
        consumerProps.put("auto.offset.reset", "latest");
        consumerProps.put("fetch.max.wait.ms", "0");
        consumerProps.put("key.deserializer", ByteArrayDeserializer.class.getName());
        consumerProps.put("value.deserializer", ByteArrayDeserializer.class.getName());
        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProps);
        List<TopicPartition> partitions = new ArrayList<>();
        for (PartitionInfo info : consumer.partitionsFor(topic)) {
            partitions.add(new TopicPartition(info.topic(), info.partition()));
        }
        consumer.assign(partitions);
        consumer.seekToEnd(partitions);
        for (TopicPartition partition : partitions) {
            consumer.position(partition);
        }
        return consumer;
    }

    /// Send one record and poll it back, `count` times; only this side's consumer sees its records
    /// because each side reads from the end it saw last.
    static void roundTrips(KafkaProducer<byte[], byte[]> producer, KafkaConsumer<byte[], byte[]> consumer,
            String topic, int size, long[] into, int from, int count) throws Exception {
        Random random = new Random(from + 7);
        // The other side's turn wrote records this consumer has not read: skip them.
        consumer.seekToEnd(consumer.assignment());
        for (TopicPartition partition : consumer.assignment()) {
            consumer.position(partition);
        }
        for (int i = 0; i < count; i++) {
            byte[] message = new byte[size];
            random.nextBytes(message);
            long begin = System.nanoTime();
            producer.send(new ProducerRecord<>(topic, message)).get();
            ConsumerRecord<byte[], byte[]> received = null;
            while (received == null) {
                if (System.nanoTime() - begin > 60_000_000_000L) {
                    throw new IllegalStateException("round trip " + i + " not consumed within 60 s");
                }
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(100))) {
                    if (Arrays.equals(record.value(), message)) {
                        received = record;
                    }
                }
            }
            into[from + i] = System.nanoTime() - begin;
        }
    }

    static void dump(java.nio.file.Path path, long[] nanos) throws Exception {
        StringBuilder text = new StringBuilder(nanos.length * 8);
        for (long n : nanos) {
            text.append(n / 1000.0).append('\n');
        }
        java.nio.file.Files.writeString(path, text);
    }

    static void print(String what, long[] nanos, double rate) {
        Arrays.sort(nanos);
        double sum = 0;
        for (long n : nanos) {
            sum += n;
        }
        System.out.printf(
                "RESULT %s n=%d avg_ms=%.4f p50_ms=%.4f p99_ms=%.4f p999_ms=%.4f max_ms=%.4f rate=%.1f%n",
                what, nanos.length, sum / nanos.length / 1e6, percentile(nanos, 0.5), percentile(nanos, 0.99),
                percentile(nanos, 0.999), nanos[nanos.length - 1] / 1e6, rate);
    }

    static double percentile(long[] sorted, double q) {
        int index = (int) Math.min(sorted.length - 1, Math.floor(sorted.length * q));
        return sorted[index] / 1e6;
    }
}
