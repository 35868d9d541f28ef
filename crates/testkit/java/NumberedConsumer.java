// Reads the records of NumberedProducer.java in a consumer group (or without one) and reports
// each one, for switchyard_testkit::numbered::NumberedConsumer (client-switchover drills: which
// records a group saw, how many twice, and how long it got nothing while the gateway switched clusters).
// Run with the Java source launcher:
//   java -cp '<kafka jars>/*' NumberedConsumer.java <bootstrap> <topic> <group> <expectedCount> <timeoutMs> [key=value ...]
//
// Subscribes to <topic> as <group> (auto.offset.reset=earliest, auto commit every second; key=value
// arguments are consumer configs applied after those), or, with <group> "-", reads without a
// group: assign() of every partition of <topic>, seekToBeginning, no commits. It polls until every value seq-1 ..
// seq-<expectedCount> has been seen at least once, or until no record has arrived for <timeoutMs>
// (counted from the start when none has come yet). Then it closes the consumer, which commits the
// final position (in a group).
//
// Only APIs that kafka-clients 2.x already has are used, so any release can run it.
//
// Output (stdout, one line each, flushed as written; logging goes to stderr):
//   ASSIGNED <topic-partition,...>           after each rebalance (possibly empty), or once without a group
//   REC <value> <partition> <offset> <epochMillis>   per record, in arrival order (when polled)
//   DONE records=<n> distinct=<n> maxPollGapMs=<ms>
// distinct counts different seq- values in 1..expectedCount; maxPollGapMs is the longest time
// between two polls that both returned records.
//
// SIGTERM wakes the consumer up; main then closes it and prints DONE before the JVM exits.

import java.io.BufferedWriter;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.BitSet;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;

public class NumberedConsumer {
    private static final Duration POLL = Duration.ofMillis(200);
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(20);
    /** The <group> argument that means: no group, assign every partition. */
    private static final String NO_GROUP = "-";
    private static final long HOOK_WAIT_MS = CLOSE_TIMEOUT.toMillis() + 15_000;

    private static final Writer OUT =
            new BufferedWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.out), StandardCharsets.UTF_8));
    private static volatile boolean stopping = false;

    static synchronized void write(String line) {
        try {
            OUT.write(line);
            OUT.write('\n');
        } catch (IOException e) {
            // stdout is gone (the reader died): nothing useful left to report to.
        }
    }

    static synchronized void flush() {
        try {
            OUT.flush();
        } catch (IOException e) {
            // as above
        }
    }

    static void emit(String line) {
        write(line);
        flush();
    }

    /** n for "seq-<n>", or -1 for anything else. */
    static long seqOf(String value) {
        if (value == null || !value.startsWith("seq-")) {
            return -1;
        }
        try {
            return Long.parseLong(value.substring(4));
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println(
                    "usage: NumberedConsumer <bootstrap> <topic> <group> <expectedCount> <timeoutMs> [key=value ...]");
            System.exit(2);
        }
        String topic = args[1];
        int expected = Integer.parseInt(args[3]);
        long timeoutMs = Long.parseLong(args[4]);

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        boolean grouped = !NO_GROUP.equals(args[2]);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        if (grouped) {
            props.put(ConsumerConfig.GROUP_ID_CONFIG, args[2]);
            props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "true");
            props.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, "1000");
        } else {
            props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        }
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("not a key=value consumer config: " + args[i]);
                System.exit(2);
            }
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props);
        Thread mainThread = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopping = true;
            consumer.wakeup();
            try {
                mainThread.join(HOOK_WAIT_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "numbered-consumer-shutdown"));

        BitSet seen = new BitSet(expected + 1);
        long records = 0;
        long lastRecordsPoll = -1;
        long maxPollGapMs = 0;
        long lastProgress = System.currentTimeMillis();
        try {
            if (grouped) {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {}
    
                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                        String assigned = partitions.stream().map(TopicPartition::toString).sorted()
                                .collect(Collectors.joining(","));
                        emit("ASSIGNED " + assigned);
                    }
                });
            } else {
                List<TopicPartition> partitions = consumer.partitionsFor(topic).stream()
                        .map(p -> new TopicPartition(p.topic(), p.partition())).collect(Collectors.toList());
                consumer.assign(partitions);
                consumer.seekToBeginning(partitions);
                emit("ASSIGNED " + partitions.stream().map(TopicPartition::toString).sorted()
                        .collect(Collectors.joining(",")));
            }
            while (!stopping && seen.cardinality() < expected) {
                ConsumerRecords<String, String> batch = consumer.poll(POLL);
                long now = System.currentTimeMillis();
                if (batch.isEmpty()) {
                    if (now - lastProgress >= timeoutMs) {
                        break;
                    }
                    continue;
                }
                if (lastRecordsPoll >= 0) {
                    maxPollGapMs = Math.max(maxPollGapMs, now - lastRecordsPoll);
                }
                lastRecordsPoll = now;
                lastProgress = now;
                for (ConsumerRecord<String, String> record : batch) {
                    records++;
                    long n = seqOf(record.value());
                    if (n >= 1 && n <= expected) {
                        seen.set((int) n);
                    }
                    write("REC " + record.value() + " " + record.partition() + " " + record.offset() + " " + now);
                }
                flush();
            }
        } catch (WakeupException e) {
            // SIGTERM: fall through to close.
        } finally {
            try {
                // close(Duration): deprecated in 4.x, but the one close with a timeout 2.x has.
                consumer.close(CLOSE_TIMEOUT);
            } catch (Exception e) {
                System.err.println("closing the consumer failed: " + e);
            }
        }
        emit("DONE records=" + records + " distinct=" + seen.cardinality() + " maxPollGapMs=" + maxPollGapMs);
    }
}
